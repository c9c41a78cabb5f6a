"""End-to-end tests of the ``skhybrid`` command line (demo, train, evaluate, predict)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _breakhis_tree import make_breakhis_tree
from PIL import Image

from skhybrid.cli import main
from skhybrid.model_io import load_model

# Tiny settings: the point is the plumbing and the outputs, not accuracy.
TINY_MODEL = ["--backbone", "resnet18", "--epochs", "2", "--batch-size", "32", "-q"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`python -m skhybrid demo` at a reduced size, as a subprocess (what `make demo` runs)."""
    out = tmp_path_factory.mktemp("demo")
    command = [
        sys.executable, "-m", "skhybrid", "demo", "--out", str(out),
        "--n-images", "32", "--image-size", "72x108", "--tile-size", "24",
        "--self-learning-rounds", "2", *TINY_MODEL[:-1],
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out, completed.stdout


def test_demo_prints_the_paper_style_report_and_history(demo_run):
    _, stdout = demo_run
    assert "Patient-wise split" in stdout
    assert "| Round |" in stdout and "0 (inherited)" in stdout  # Table 4-style history
    for column in ("Accuracy", "Sensitivity", "Specificity", "Precision", "F1", "AUC"):
        assert column in stdout
    assert "Patient recognition rate" in stdout
    assert "inherited ->" in stdout  # tile labels vs ground truth, before and after


def test_demo_writes_report_plots_and_a_loadable_model(demo_run):
    out, _ = demo_run
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "patient" and report["leaky"] is False
    assert set(report["reports"]) == {"image", "tile"}
    image = report["reports"]["image"]
    assert image["tp"] + image["fp"] + image["fn"] + image["tn"] == report["info"]["n_test"]
    assert 0.0 <= image["accuracy"] <= 1.0
    history = report["self_learning_history"]
    assert history[0]["round"] == 0 and len(history) >= 2
    accuracy = report["tile_label_accuracy"]
    assert accuracy["corrected"] >= accuracy["inherited"]  # relabeling moved towards the truth
    assert _is_png(out / "roc_curve.png") and _is_png(out / "pr_curve.png")
    model = load_model(out / "model.joblib", require_tiler=True)
    # With self-learning, an image is malignant as soon as one tile is.
    assert model.steps[-1][1].aggregation == "mil"
    # Written for prediction: no Adam state (without --keep-optimizer-state).
    assert not model.steps[-1][1].optimizer_.state
    images = np.random.default_rng(0).integers(0, 256, (2, 72, 108, 3), dtype=np.uint8)
    proba = model.predict_proba(images)
    assert proba.shape == (2, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


@pytest.fixture(scope="module")
def breakhis_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("breakhis")
    make_breakhis_tree(root, n_per_class=12, image_size=(46, 70), magnifications=(40, 100))
    return root


@pytest.fixture(scope="module")
def trained_model(breakhis_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    code = main([
        "train", str(breakhis_tree), "--magnification", "40X", "--tile-size", "16",
        "--self-learning-rounds", "1", "--out", str(out), *TINY_MODEL,
    ])  # fmt: skip
    assert code == 0
    return out


def test_train_on_a_breakhis_tree(trained_model):
    report = json.loads((trained_model / "report.json").read_text())
    assert report["protocol"] == "patient"
    assert report["info"]["tile_shape"] == [16, 16]
    assert report["info"]["n_train"] + report["info"]["n_test"] == 12
    assert 0.0 <= report["patient_score"] <= 1.0
    assert (trained_model / "model.joblib").is_file()


def test_evaluate_a_saved_model(trained_model, breakhis_tree, tmp_path, capsys):
    code = main([
        "evaluate", str(trained_model / "model.joblib"), str(breakhis_tree),
        "--magnification", "100X", "--out", str(tmp_path), "-q",
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Sensitivity" in printed and "Patient recognition rate" in printed
    assert "Scoring" not in printed  # -q: the report only
    report = json.loads((tmp_path / "report.json").read_text())
    image = report["reports"]["image"]
    assert image["n"] == 12  # the 100X images, scored by a model trained on 40X
    assert not (tmp_path / "model.joblib").exists()  # evaluate never rewrites the model


def test_evaluate_says_what_it_scores_unless_quiet(trained_model, breakhis_tree, capsys):
    model = str(trained_model / "model.joblib")
    argv = ["evaluate", model, str(breakhis_tree), "--magnification", "100X"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert re.search(rf"Scoring {re.escape(model)} on 12 images of \d+ slides", printed)
    assert "Patient recognition rate" in printed
    assert main([*argv, "-q"]) == 0
    quiet = capsys.readouterr().out
    assert "Scoring" not in quiet and "Patient recognition rate" in quiet
    # evaluate decodes no image up front (the tiler reads the files), so it has no --n-jobs.
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--n-jobs", "2"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --n-jobs" in capsys.readouterr().err


def test_predict_prints_tile_grid_and_writes_overlays(
    trained_model, breakhis_tree, tmp_path, capsys
):
    images = sorted(breakhis_tree.rglob("*-40-*.png"))[:2]
    code = main([
        "predict", str(trained_model / "model.joblib"), *map(str, images),
        "--overlay", str(tmp_path), "--json",
    ])  # fmt: skip
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == [str(p) for p in images]
    for entry in results:
        assert entry["label"] in {"benign", "malignant"}
        assert sum(entry["probability"].values()) == pytest.approx(1.0, abs=1e-3)
        grid = np.asarray(entry["tile_probability_grid"])
        assert grid.shape == (3, 3) and np.all((grid >= 0) & (grid <= 1))
        overlay = Path(entry["overlay"])
        assert _is_png(overlay) or overlay.stat().st_size > 500
        assert Image.open(overlay).size == Image.open(entry["image"]).size


def test_train_with_the_papers_leaky_protocol(breakhis_tree, tmp_path, capsys):
    code = main([
        "train", str(breakhis_tree), "--magnification", "40X", "--tile-size", "16",
        "--self-learning-rounds", "0", "--split", "random-tile", "--out", str(tmp_path),
        "--model", "cnn", *TINY_MODEL,
    ])  # fmt: skip
    assert code == 0
    assert "WARNING: random split of tiles" in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["leaky"] is True and report["info"]["split_unit"] == "tile"
    assert report["info"]["n_train"] + report["info"]["n_test"] == 12 * 9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "/no/such/folder"], "not found"),
        (["evaluate", "/no/model.joblib", "/tmp"], "not found"),
        (["demo", "--n-images", "4"], "at least 16"),
        (["train", "{tree}", "--magnification", "41X", "-q"], "41X"),
        (["predict", "{garbage}", "x.png"], "not a skhybrid model"),
    ],
)
def test_user_errors_are_one_line_messages(argv, message, breakhis_tree, tmp_path, capsys):
    garbage = tmp_path / "garbage.joblib"
    garbage.write_text("not a model")
    argv = [a.format(tree=breakhis_tree, garbage=garbage) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_weights_file_that_is_not_torch_is_a_one_line_error(tmp_path, capsys):
    """An existing file that torch cannot read (a PNG) passes the parser's file check and is
    rejected as not a state dict: exit status 2, one line, no traceback."""
    png = tmp_path / "ok.png"
    Image.new("RGB", (8, 8)).save(png)
    argv = [
        "demo", "--weights", str(png), "--n-images", "16", "--image-size", "32x48",
        "--tile-size", "16", "--self-learning-rounds", "0", "--epochs", "1", "-q",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("skhybrid demo: error: ") and "is not a PyTorch state dict file" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_option_values_are_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--tile-size", "0x4"])
    assert exit_info.value.code == 2
    assert "positive" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "train", "evaluate", "predict"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: skhybrid " + command in capsys.readouterr().out


def test_help_texts_match_what_the_commands_do(capsys):
    def help_of(command: str) -> str:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        return " ".join(capsys.readouterr().out.split())  # argparse wraps lines

    assert "self_learning_history.md" in help_of("demo")  # ExperimentResult.save writes it
    assert "threads decoding the PNG files" in help_of("train")  # load_breakhis uses threads
    evaluate = help_of("evaluate")
    assert "held-out" in evaluate and "overstates" in evaluate and "--n-jobs" not in evaluate


def test_cli_on_the_real_breakhis_sample(breakhis_sample, tmp_path, capsys):
    """train / evaluate / predict on the 23 real images in the official layout."""
    out = tmp_path / "model"
    code = main([
        "train", str(breakhis_sample), "--tile-size", "32", "--self-learning-rounds", "1",
        "--out", str(out), *TINY_MODEL,
    ])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["info"]["n_images"] == 23
    assert main(["evaluate", str(out / "model.joblib"), str(breakhis_sample), "-q"]) == 0
    assert "Patient recognition rate" in capsys.readouterr().out
    image = sorted(breakhis_sample.rglob("*.png"))[0]
    assert main(["predict", str(out / "model.joblib"), str(image), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["label"] in {"benign", "malignant"}


def test_image_aggregation_follows_self_learning_unless_given():
    from skhybrid.cli import _build_parser, _classifier_params
    from skhybrid.workflow import default_aggregation

    assert default_aggregation(4) == "mil" and default_aggregation(0) == "mean"
    parser = _build_parser()
    cases = {
        (): "mil",  # 4 rounds by default: an image is malignant as soon as one tile is
        ("--self-learning-rounds", "0"): "mean",
        ("--aggregation", "vote"): "vote",  # an explicit choice wins
    }
    for extra, expected in cases.items():
        args = parser.parse_args(["train", "data", *extra])
        assert _classifier_params(args, demo=False)["aggregation"] == expected, extra
