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

# Tiny settings: the point is the plumbing and the outputs, not accuracy. From scratch: the
# command line's default ImageNet weights of resnet18 are not on every machine.
TINY_MODEL = [
    "--recipe", "paper", "--backbone", "resnet18", "--weights", "none", "--epochs", "2", "--batch-size", "32", "-q",
]  # fmt: skip

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`python -m skhybrid demo` at a reduced size, as a subprocess (what `make demo` runs),
    with the demo's own backbone: efficientnet_lite0's ImageNet weights, frozen, then tuned."""
    out = tmp_path_factory.mktemp("demo")
    command = [
        sys.executable, "-m", "skhybrid", "demo", "--out", str(out),
        "--n-images", "32", "--image-size", "72x108", "--tile-size", "32",
        "--self-learning-rounds", "2", "--epochs", "2", "--freeze-epochs", "1",
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


def test_demo_writes_no_colour_codes_into_a_pipe(demo_run):
    """skorch colours its epoch table; in a pipe (this subprocess's stdout) the codes go."""
    _, stdout = demo_run
    assert "train_loss" in stdout  # the epoch table is there (no -q) ...
    assert "backbone_frozen" in stdout  # pretrained: phase 1 frozen, then fine-tuned
    assert "\x1b[" not in stdout  # ... without ANSI escape codes


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
    classifier = model.steps[-1][1]
    assert (classifier.backbone, classifier.weights) == ("efficientnet_lite0", "imagenet")
    assert (classifier.freeze_epochs, classifier.max_epochs) == (1, 2)
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
        (["train", "{tree}", "--magnification", "41X", "-q"], "41X"),
        (["predict", "{garbage}", "x.png"], "not a skhybrid model"),
    ],
)
def test_user_errors_are_one_line_messages(argv, message, breakhis_tree, tmp_path, capsys):
    garbage = tmp_path / "garbage.joblib"
    garbage.write_text("not a model")
    argv = [a.format(tree=breakhis_tree, garbage=garbage) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_weights_file_that_is_not_torch_is_a_one_line_error(tmp_path, capsys):
    """An existing file that torch cannot read (a PNG) passes the parser's file check and is
    rejected as not a state dict before any image is made: exit status 1, one line."""
    png = tmp_path / "ok.png"
    Image.new("RGB", (8, 8)).save(png)
    argv = [
        "demo", "--weights", str(png), "--n-images", "16", "--image-size", "32x48",
        "--tile-size", "16", "--self-learning-rounds", "0", "--epochs", "1",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("skhybrid demo: error: ") and "is not a PyTorch state dict file" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "Cutting" not in captured.out  # checked before the long run, not after it


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--n-images", "4"], "at least 16"),
        (["demo", "--test-size", "0.9"], "(0, 0.5]"),
        (["demo", "--test-size", "0"], "(0, 0.5]"),
        (["train", "data", "--self-learning-rounds", "-1"], "at least 0"),
        (["train", "data", "--aggregation", "median"], "invalid choice"),
        (["train", "data", "--backbone", "resnet7"], "invalid choice"),
        (["demo", "--tile-size", "0x4"], "positive"),
        (["demo", "--device", "gpu7"], "not a torch device"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: skhybrid") and message in err


def test_an_internal_bug_prints_its_traceback_and_exits_1(monkeypatch, capsys):
    """Not every ValueError/KeyError is the user's: anything but skhybrid's user errors is a
    bug, and the traceback is what a bug report needs."""
    import skhybrid.cli

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(skhybrid.cli, "_load_breakhis", broken)
    assert main(["train", "anywhere"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError: 'a bug'" in err
    assert "internal error (KeyError)" in err.strip().splitlines()[-1]

    # a plain ValueError from inside is a bug too now, not a one-line "user error"
    monkeypatch.setattr(skhybrid.cli, "_load_breakhis", lambda *a, **k: int("x"))
    assert main(["train", "anywhere"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_traceback_option_before_or_after_the_command(where, capsys):
    command = ["train", "/no/such/folder"]
    argv = ["--traceback", *command] if where == "before" else [*command, "--traceback"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "PathNotFoundError" in err
    assert err.strip().splitlines()[-1] == "skhybrid train: error: data folder not found: " + (
        "/no/such/folder"
    )
    # and without it, the one line only
    assert main(command) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_colour_codes_only_on_a_terminal(monkeypatch):
    import io

    from skhybrid.cli import _plain_output

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    coloured = "\x1b[36m0.5707\x1b[0m"
    for stream, no_color, kept in [
        (io.StringIO(), "", False),  # a pipe or a file
        (Terminal(), "", True),
        (Terminal(), "1", False),  # NO_COLOR wins over the terminal
    ]:
        monkeypatch.setenv("NO_COLOR", no_color)
        monkeypatch.setattr(sys, "stdout", stream)
        with _plain_output():
            print(coloured)
        assert sys.stdout is stream  # restored
        assert stream.getvalue() == (coloured if kept else "0.5707") + "\n"


def _subcommands():
    import argparse

    from skhybrid.cli import _build_parser

    parser = _build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_every_option_has_help_and_shows_its_default():
    import argparse

    parser, commands = _subcommands()
    for name, sub in [("skhybrid", parser), *commands.items()]:
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            where = f"{name} {action.dest}"
            assert action.help and action.help.strip(), where
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                # ArgumentDefaultsHelpFormatter: "(default: ...)" after the help
                assert "(default: " in sub._get_formatter()._get_help_string(action), where
            if action.choices:
                # the choices are listed, in the usage line or the help
                assert all(str(c) in text for c in action.choices), where


def test_option_choices_are_the_librarys_constants():
    from skhybrid.estimators import AGGREGATIONS
    from skhybrid.estimators._runtime import PRECISIONS
    from skhybrid.nn import FUSIONS, available_backbones
    from skhybrid.splits import PROTOCOLS
    from skhybrid.workflow import MODELS, RELABELERS

    _, commands = _subcommands()
    expected = {
        "model": MODELS,
        "backbone": available_backbones(),
        "fusion": FUSIONS,
        "aggregation": AGGREGATIONS,
        "precision": PRECISIONS,
        "split": PROTOCOLS,
        "relabel_with": RELABELERS,
    }
    for name in ("demo", "train"):
        actions = {a.dest: a for a in commands[name]._actions}
        for dest, choices in expected.items():
            assert list(actions[dest].choices) == list(choices), (name, dest)


def test_command_line_defaults_are_the_python_apis():
    """The shared parameters default to the same values on the command line and in Python;
    the deliberate differences (weights, from-scratch lr/freeze, the small demo) are tested
    as such."""
    import inspect

    from skhybrid.cli import _build_parser, _classifier_params
    from skhybrid.workflow import classifier_defaults, run_experiment

    parser = _build_parser()
    estimator = classifier_defaults("hybrid")
    assert classifier_defaults("cnn")["freeze_epochs"] == estimator["freeze_epochs"]
    experiment = {n: p.default for n, p in inspect.signature(run_experiment).parameters.items()}

    pretrained = parser.parse_args(["train", "data", "--backbone", "resnet101"])
    params = _classifier_params(pretrained)
    assert params["weights"] == estimator["weights"] == "imagenet"  # the default, as in Python
    for name in ("backbone", "max_epochs", "batch_size", "fusion", "device", "precision"):
        assert params[name] == estimator[name], name
    assert params["freeze_epochs"] == estimator["freeze_epochs"]
    assert params["lr"] == estimator["lr"]
    assert pretrained.aggregation is None and experiment["aggregation"] is None
    assert "aggregation" not in params  # run_experiment decides (default_aggregation)
    assert pretrained.self_learning_rounds == experiment["self_learning_rounds"]
    assert pretrained.relabel_with == experiment["relabel_with"]
    assert pretrained.split == experiment["protocol"]
    assert pretrained.test_size == experiment["test_size"]
    assert pretrained.seed == experiment["random_state"]

    # Deliberate: the backbone whose ImageNet weights work offline (resnet101: one flag away).
    default = _classifier_params(parser.parse_args(["train", "data"]))
    assert default["backbone"] == "efficientnet_lite0" != estimator["backbone"]
    assert default["weights"] == "imagenet"
    # Deliberate: balanced class weights (real BreakHis is ~70 % malignant); "none" is None.
    assert default["class_weight"] == "balanced" and estimator["class_weight"] is None
    unweighted = parser.parse_args(["train", "data", "--class-weight", "none"])
    assert _classifier_params(unweighted)["class_weight"] is None
    # A random CNN is not frozen and learns faster.
    scratch = _classifier_params(parser.parse_args(["train", "data", "--weights", "none"]))
    assert scratch["weights"] is None
    assert scratch["freeze_epochs"] == 0 and scratch["lr"] == 1e-3
    # Deliberate: the demo is small, and shows transfer learning (frozen, then fine-tuned).
    demo = _classifier_params(parser.parse_args(["demo"]))
    assert (demo["backbone"], demo["weights"]) == ("efficientnet_lite0", "imagenet")
    assert (demo["max_epochs"], demo["freeze_epochs"], demo["batch_size"]) == (10, 4, 32)
    assert demo["lr"] == estimator["lr"]
    demo_scratch = _classifier_params(parser.parse_args(["demo", "--weights", "none"]))
    assert demo_scratch["freeze_epochs"] == 0
    # An explicit option wins.
    given = _classifier_params(parser.parse_args(["train", "data", "--freeze-epochs", "3"]))
    assert given["freeze_epochs"] == 3


@pytest.mark.parametrize("command", ["demo", "train", "evaluate", "predict", "weights"])
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
