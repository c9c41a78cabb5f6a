"""``skhybrid train`` survives a killed process and Ctrl-C: ``--resume`` ends on the same model.

Each run is a real process (``python -m skhybrid train``) on a small generated BreakHis tree:
one runs to its end; one is killed with SIGKILL after its third epoch and resumed; one gets
SIGINT (Ctrl-C) after its third epoch, must save the best model so far and say how to resume,
and is resumed too. In fp32 with a seed, both resumed runs must end with the uninterrupted
run's epochs, weights and predictions.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _breakhis_tree import make_breakhis_tree

from skhybrid import load_model
from skhybrid.cli import main
from skhybrid.estimators import load_checkpoint

#: Six epochs of a small CNN, the whole of it trained (from scratch), with a validation split.
EPOCHS = 6
SETTINGS = [
    "--recipe", "paper", "--tile-size", "32", "--self-learning-rounds", "1", "--model", "cnn",
    "--backbone", "mobilenet_v3_small", "--weights", "none", "--epochs", str(EPOCHS),
    "--batch-size", "32", "--precision", "fp32", "--seed", "3",
]  # fmt: skip
_EPOCH_ROW = re.compile(r"^\s+(\d+)\s")
_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("breakhis")
    make_breakhis_tree(root, n_per_class=12, image_size=(46, 70), magnifications=(40,))
    return root


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "skhybrid", "train", *args]


def _start_and_stop_after_epoch(tree: Path, out: Path, sig: int, epoch: int = 3):
    """Start a training process, send ``sig`` once its epoch table shows ``epoch``."""
    process = subprocess.Popen(
        _command(str(tree), "--out", str(out), *SETTINGS),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_ENV,
    )
    for line in process.stdout:
        match = _EPOCH_ROW.match(line)
        if match and int(match.group(1)) >= epoch:
            process.send_signal(sig)
            break
    _, err_text = process.communicate(timeout=300)
    return process.returncode, err_text


def _resume(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command("--resume", str(out), "-q"), capture_output=True, text=True, env=_ENV
    )


@pytest.fixture(scope="module")
def uninterrupted(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    done = subprocess.run(
        _command(str(tree), "--out", str(out), *SETTINGS, "-q"),
        capture_output=True,
        text=True,
        env=_ENV,
    )
    assert done.returncode == 0, done.stderr
    return out


def _same_model(out: Path, reference: Path) -> None:
    model, expected = load_model(out / "model.joblib"), load_model(reference / "model.joblib")
    clf, clf_expected = model.steps[-1][1], expected.steps[-1][1]
    assert len(clf.history) == len(clf_expected.history) == EPOCHS
    state, state_expected = clf.module_.state_dict(), clf_expected.module_.state_dict()
    assert state.keys() == state_expected.keys()
    for name in state:
        assert torch.equal(state[name], state_expected[name]), name
    with open(out / "predictions.csv") as a, open(reference / "predictions.csv") as b:
        assert list(csv.DictReader(a)) == list(csv.DictReader(b))
    report, report_expected = (
        json.loads((d / "report.json").read_text()) for d in (out, reference)
    )
    assert report["reports"] == report_expected["reports"]
    assert not (out / "checkpoint").exists()  # a finished run removes its checkpoint


def test_a_killed_training_resumes_to_the_uninterrupted_model(tree, uninterrupted, tmp_path):
    out = tmp_path / "run"
    code, _ = _start_and_stop_after_epoch(tree, out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not (out / "report.json").exists()
    checkpoint = load_checkpoint(out / "checkpoint")
    assert 2 <= checkpoint["epoch"] < EPOCHS and not checkpoint["finished"]
    assert (out / "checkpoint" / "self_learning.npz").is_file()

    # A new run into the folder is refused, and the message names --resume.
    refused = subprocess.run(
        _command(str(tree), "--out", str(out), *SETTINGS, "-q"),
        capture_output=True,
        text=True,
        env=_ENV,
    )
    assert refused.returncode == 1 and f"--resume {out}" in refused.stderr

    resumed = _resume(out)
    assert resumed.returncode == 0, resumed.stderr
    _same_model(out, uninterrupted)


def test_ctrl_c_saves_the_best_model_so_far_and_says_how_to_resume(tree, uninterrupted, tmp_path):
    out = tmp_path / "run"
    code, err_text = _start_and_stop_after_epoch(tree, out, signal.SIGINT)
    assert code == 130
    assert f"skhybrid train --resume {out}" in err_text
    assert "Traceback" not in err_text
    best = load_model(out / "model.joblib").steps[-1][1]
    checkpoint = load_checkpoint(out / "checkpoint")
    assert not checkpoint["finished"]
    completed = checkpoint["epoch"]
    assert 3 <= completed < EPOCHS
    assert f"after epoch {completed} of {EPOCHS}" in err_text
    # The saved weights are the best epoch's among those completed, not the last one's.
    losses = [row["valid_loss"] for row in list(best.history)[:completed]]
    best_epoch = min(range(completed), key=losses.__getitem__) + 1
    assert best.history[-1]["best_epoch_restored"] == best_epoch
    assert f"best epoch {best_epoch}" in err_text
    assert not (out / "report.json").exists()

    resumed = _resume(out)
    assert resumed.returncode == 0, resumed.stderr
    _same_model(out, uninterrupted)


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("none", [], "no such folder"),
        ("empty", [], "no interrupted"),
        ("finished", [], "nothing to resume"),
        ("empty", ["--epochs", "3"], "only -q and --traceback"),
    ],
)
def test_resume_refuses_what_it_cannot_continue(tmp_path, capsys, setup, extra, message):
    out = tmp_path / "run"
    if setup != "none":
        out.mkdir()
    if setup == "finished":
        (out / "run.json").write_text(json.dumps({"format": 1, "argv": ["train"], "cwd": "."}))
        (out / "report.json").write_text("{}")
    assert main(["train", "--resume", str(out), *extra]) == 1
    assert message in capsys.readouterr().err


def test_train_needs_a_data_folder_or_resume(capsys):
    assert main(["train"]) == 1
    assert "--resume OUT" in capsys.readouterr().err
