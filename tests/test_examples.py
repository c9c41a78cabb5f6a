"""Every script in examples/ runs at a reduced size and produces what it promises.

Each test runs one script as a subprocess (``sys.executable examples/<script>.py ...``), as a
user would, in a temporary folder, and checks its output files and printed numbers. Scripts
that take more than about 20 s on one core are marked ``slow``; ``make examples`` runs them all.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

REPOSITORY = Path(__file__).resolve().parents[1]
EXAMPLES = REPOSITORY / "examples"
#: Where the examples look for the real BreakHis sample (as tests/conftest.py).
SAMPLE = REPOSITORY.parent / "shared" / "data" / "breakhis-sample"

#: The scripts these tests cover; test_every_example_is_tested fails when one is added.
TESTED = {
    "feature_extractor_baseline.py",
    "grid_search_backbones.py",
    "metrics_and_scorers.py",
    "patient_cross_validation.py",
    "plot_synthetic_vs_breakhis.py",
    "recommended_recipe.py",
    "repeated_patient_cv.py",
    "reproduce_paper.py",
    "resume_training.py",
    "save_and_load_model.py",
    "self_learning_relabel.py",
    "stain_normalization.py",  # run by tests/test_stain_normalization.py
    "tile_real_image.py",
    "train_hybrid_synthetic.py",
    "transfer_learning_offline.py",
}
FLOAT = r"(nan|\d+\.\d+)"


def run_example(script: str, *args: object, cwd: Path, timeout: float = 300) -> str:
    """Run ``examples/<script>`` in ``cwd``; return its stdout, failing with its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, str(EXAMPLES / script), *map(str, args)]
    completed = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout
    )
    assert completed.returncode == 0, (
        f"{' '.join(command)} exited with {completed.returncode}\n"
        f"--- stdout ---\n{completed.stdout[-4000:]}\n--- stderr ---\n{completed.stderr[-4000:]}"
    )
    return completed.stdout


def number(pattern: str, text: str) -> float:
    """The first group of ``pattern`` in ``text`` as a float."""
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found in:\n{text}"
    return float(match.group(1))


def assert_png(path: Path, *, size: tuple[int, int] | None = None, min_bytes: int = 5000) -> None:
    """A real PNG, of ``size`` (width, height) when given, that is not a blank canvas."""
    assert path.is_file(), f"{path} was not written"
    assert path.stat().st_size >= min_bytes, f"{path} is only {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.format == "PNG"
        if size is not None:
            assert image.size == size
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 5, f"{path} looks blank"


def markdown_table(text: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and body rows of the first Markdown table whose header starts so."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    cells = [
        [cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[start:]
    ]
    body = []
    for line, row in zip(lines[start + 2 :], cells[2:]):
        if not line.startswith("|"):
            break
        body.append(row)
    return cells[0], body


def test_every_example_is_tested() -> None:
    assert {path.name for path in EXAMPLES.glob("*.py")} == TESTED


# -- scripts without a network: seconds ---------------------------------------------------------
def test_metrics_and_scorers(tmp_path: Path) -> None:
    out = tmp_path / "figures"
    stdout = run_example("metrics_and_scorers.py", out, cwd=tmp_path)

    for name in ("roc.png", "precision_recall.png", "confusion_matrix.png"):
        assert_png(out / name)
    # Cross-validated patient-wise scores: a real signal, below the leaky random split's.
    for model in ("Logistic regression", "Random forest"):
        auc = number(rf"{model}: accuracy .* roc_auc {FLOAT}±", stdout)
        assert 0.6 < auc <= 1.0
        assert 0.5 < number(rf"{model}: patient recognition rate {FLOAT}", stdout) <= 1.0
    assert 0.7 < number(rf"random image split \(leaky!\): roc_auc {FLOAT}", stdout) <= 1.0

    header, rows = markdown_table(stdout, "| Model |")
    assert header == [
        "Model",
        "Accuracy (%)",
        "Sensitivity (%)",
        "Specificity (%)",
        "Precision (%)",
        "F1 (%)",
        "AUC (%)",
        "TP",
        "FP",
        "FN",
        "TN",
        "n",
    ]
    assert [row[0] for row in rows] == ["Logistic regression", "Random forest"]
    for row in rows:
        assert all(50 < float(cell) <= 100 for cell in row[1:7])
        tp, fp, fn, tn, n = map(int, row[7:])
        assert tp + fp + fn + tn == n > 100


def test_repeated_patient_cv(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    stdout = run_example(
        "repeated_patient_cv.py",
        *("--n-images", 48, "--n-patients", 12, "--n-splits", 3, "--n-repeats", 2),
        *("--n-resamples", 100, "--json", out),
        cwd=tmp_path,
    )

    assert "make_histology: 48 images, 12 patients" in stdout
    header, rows = markdown_table(stdout, "| Metric |")
    assert header[0] == "Metric" and header[-1] == "Model - baseline (95 % CI)"
    assert [row[0] for row in rows][:2] == ["accuracy", "sensitivity"]
    for row in rows:
        for cell in (row[1], row[3], row[4]):  # model, baseline, difference: "m [low, high]"
            estimate, low, high = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", cell).groups())
            assert low <= estimate <= high
    result = json.loads(out.read_text())
    assert result["n_repeats"] == 2 and len(result["folds"]) == 6
    assert all(len(row) == 48 for row in result["oof_proba"])


def test_recommended_recipe(tmp_path: Path) -> None:
    """The threshold is tuned on inner patients and the paired interval is reported."""
    stdout = run_example(
        "recommended_recipe.py", "--n-images", 80, "--repeats", 1, "--resamples", 200, cwd=tmp_path
    )
    threshold = number(rf"threshold P\(malignant\) >= {FLOAT}", stdout)
    inner = number(rf"inner balanced accuracy {FLOAT}", stdout)
    at_half = number(rf"at 0\.5 {FLOAT}", stdout)
    assert 0.0 < threshold < 1.0 and inner >= at_half  # the tuned threshold is the inner best
    assert number(rf"held-out balanced accuracy {FLOAT}", stdout) > 0.6  # it learns
    _, rows = markdown_table(stdout, "| Metric |")
    balanced = next(row for row in rows if row[0] == "balanced_accuracy")
    estimate, low, high = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", balanced[4]).groups())
    assert low <= estimate <= high
    assert re.search(
        r"recipe - baseline: [+-]\d\.\d{3} \[.*\]: the interval (holds|excludes) 0", stdout
    )


def test_resume_training(tmp_path: Path) -> None:
    """Interrupted mid-epoch, resumed from the checkpoint: the uninterrupted fit's weights."""
    stdout = run_example("resume_training.py", "--out", tmp_path / "ck", cwd=tmp_path)
    assert "interrupted after epoch 2" in stdout
    assert "resumed to epoch 6 of 6" in stdout
    assert "weights identical to the uninterrupted fit: True" in stdout
    assert "probabilities identical: True" in stdout
    assert (tmp_path / "ck" / "checkpoint.pt").is_file()


def test_transfer_learning_offline(tmp_path: Path) -> None:
    """Fine-tuned vs scratch (paired) and frozen features + LR, on the same patient folds."""
    out = tmp_path / "result.json"
    stdout = run_example(
        "transfer_learning_offline.py",
        *("--n-images", 32, "--n-patients", 8, "--size", 48, "--n-splits", 2, "--n-repeats", 1),
        *("--epochs", 2, "--freeze-epochs", 1, "--n-resamples", 50, "--json", out),
        cwd=tmp_path,
    )
    assert "make_histology: 32 images (48x48), 8 patients; 1 x 2 patient-wise folds" in stdout
    result = json.loads(out.read_text())
    assert set(result) == {"fine-tuned vs scratch", "frozen + LR"}
    paired, frozen = result["fine-tuned vs scratch"], result["frozen + LR"]
    assert len(paired["folds"]) == len(paired["baseline_folds"]) == len(frozen["folds"]) == 2
    # The same folds for all three: the same test patients, fold by fold.
    assert [f["n_test"] for f in paired["folds"]] == [f["n_test"] for f in frozen["folds"]]
    assert paired["baseline_intervals"] is not None and frozen["baseline_intervals"] is None
    for interval in (*paired["intervals"].values(), *frozen["intervals"].values()):
        if interval["estimate"] is not None:
            assert interval["low"] <= interval["estimate"] <= interval["high"]
    # ImageNet features separate the synthetic tissues (chance: AUC 0.5), offline.
    assert frozen["intervals"]["auc"]["estimate"] >= 0.8


def test_self_learning_relabel(tmp_path: Path) -> None:
    n_images = 60
    stdout = run_example("self_learning_relabel.py", "--n-images", n_images, cwd=tmp_path)

    header, rows = markdown_table(stdout, "| Round |")
    assert header[:3] == ["Round", "benign", "malignant"]
    assert header[-1] == "Tile accuracy"
    assert rows[0][0] == "0 (inherited)"
    assert 2 <= len(rows) <= 5  # round 0 and up to 4 rounds
    for row in rows:
        assert int(row[1]) + int(row[2]) == n_images * 9  # relabeling never loses a tile
    # Half the tiles of malignant images are benign: relabeling must find many of them.
    inherited = number(rf"inherited labels: {FLOAT}", stdout)
    corrected = number(rf"after relabeling: {FLOAT}", stdout)
    assert 0.6 < inherited < corrected <= 1.0
    assert corrected - inherited > 0.05
    assert re.search(r"Stopped: \w+ after [1-4] rounds", stdout)
    assert re.search(r"P\(malignant\): \[[\d. ]+\]", stdout)


def test_plot_synthetic_vs_breakhis(tmp_path: Path) -> None:
    output = tmp_path / "figure.png"
    stdout = run_example("plot_synthetic_vs_breakhis.py", output, cwd=tmp_path)

    assert stdout.strip() == str(output)
    # 16 x 3.1 inches per row at 110 dpi; a second row of real images when the sample exists.
    rows = 2 if SAMPLE.is_dir() else 1
    assert_png(output, size=(1760, 341 * rows), min_bytes=100_000)


def test_tile_real_image(tmp_path: Path) -> None:
    stdout = run_example("tile_real_image.py", "--out", tmp_path / "out", cwd=tmp_path)

    match = re.search(r"(\d+)x(\d+) -> 9 tiles of 224x224 \(native \((\d+), (\d+)\)\)", stdout)
    assert match, stdout
    width, height, tile_w, tile_h = map(int, match.groups())
    assert (tile_w, tile_h) == (width // 3, height // 3)
    if SAMPLE.is_dir():  # the first real image of the sample, BreakHis' 700x460
        assert stdout.startswith("SOB_") and (width, height) == (700, 460)
    assert_png(tmp_path / "out" / "tiles.png", size=(1300, 460), min_bytes=100_000)


# -- small networks: about ten seconds each -----------------------------------------------------
def test_save_and_load_model(tmp_path: Path) -> None:
    stdout = run_example(
        "save_and_load_model.py", "--out", tmp_path / "out", "--n-images", 16, cwd=tmp_path
    )

    path = tmp_path / "out" / "model.joblib"
    assert path.is_file()
    megabytes = number(rf"Saved {re.escape(str(path))} \({FLOAT} MB\)", stdout)
    assert megabytes == pytest.approx(path.stat().st_size / 1e6, abs=0.06)
    assert megabytes > 1  # a resnet18 is in there
    assert stdout.count("identical predictions: True") == 2


def test_feature_extractor_baseline(tmp_path: Path) -> None:
    stdout = run_example("feature_extractor_baseline.py", "--n-images", 24, cwd=tmp_path)

    assert "resnet18 features (random weights): (24, 512)" in stdout
    for name in ("logistic", "svm \\(rbf\\)"):
        accuracy = number(rf"{name}\s+patient-wise accuracy: {FLOAT} ± \d", stdout)
        assert 0.0 <= accuracy <= 1.0


def test_train_hybrid_synthetic(tmp_path: Path) -> None:
    stdout = run_example("train_hybrid_synthetic.py", "--n-images", 24, "--epochs", 2, cwd=tmp_path)

    # Two epochs: phase 1 with the backbone frozen, then fine-tuning.
    epochs = re.findall(r"^\s+(\d+)\s+([+ ])\s", stdout, flags=re.MULTILINE)
    assert [(int(epoch), frozen) for epoch, frozen in epochs] == [(1, "+"), (2, " ")]
    n_train = number(r"fit: \d+\.\d s on (\d+) images", stdout)
    n_test = number(r"patient-wise holdout \((\d+) images", stdout)
    assert n_train + n_test == 24 and n_test > 0
    assert 0.0 <= number(rf"accuracy: {FLOAT}", stdout) <= 1.0


# -- cross-validated networks: slow -------------------------------------------------------------
@pytest.mark.slow
def test_patient_cross_validation(tmp_path: Path) -> None:
    stdout = run_example("patient_cross_validation.py", "--quick", cwd=tmp_path)

    assert "48 images, 8 patients" in stdout
    for name in (
        "baseline, patient-wise",
        "baseline, random images (KFold, LEAKY)",
        "hybrid CNN-LSTM, patient-wise",
    ):
        line = next(line for line in stdout.splitlines() if line.startswith(name))
        scores = dict(re.findall(rf"(\w+) {FLOAT}", line))
        assert set(scores) == {"accuracy", "sensitivity", "specificity", "roc_auc"}
        # Every test fold holds both classes, so no score is undefined (nan).
        assert all(0.0 <= float(value) <= 1.0 for value in scores.values()), line
    baseline = next(line for line in stdout.splitlines() if line.startswith("baseline, patient"))
    assert float(re.search(rf"roc_auc {FLOAT}", baseline).group(1)) > 0.6


@pytest.mark.slow
def test_grid_search_backbones(tmp_path: Path) -> None:
    stdout = run_example("grid_search_backbones.py", "--quick", cwd=tmp_path)

    rows = re.findall(rf"^(\S+)\s+(attention|concat)\s+{FLOAT} ± {FLOAT}", stdout, re.MULTILINE)
    assert [row[:2] for row in rows] == [
        ("resnet18", "attention"),
        ("mobilenet_v3_small", "attention"),
    ]
    for _, _, mean, std in rows:
        assert 0.0 <= float(mean) <= 1.0 and 0.0 <= float(std) <= 0.5
    best = re.search(r"Best \(by patient-wise ROC AUC\): (\{.*\})", stdout)
    assert best and "'clf__backbone'" in best.group(1)


# -- reproduce_paper.py --------------------------------------------------------------------------
def load_reproduce_paper() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "reproduce_paper", EXAMPLES / "reproduce_paper.py"
    )
    module = importlib.util.module_from_spec(spec)
    # Registered first, as importlib's recipe does: its dataclasses look their module up.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reproduce_paper() -> ModuleType:
    return load_reproduce_paper()


METRICS_COLUMNS = [
    "magnification",
    "protocol",
    "model",
    "level",
    "accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "auc",
    "tp",
    "fp",
    "fn",
    "tn",
    "n",
    "paper_accuracy",
    "paper_sensitivity",
    "paper_specificity",
    "paper_precision",
    "paper_f1",
    "paper_tp",
    "paper_fp",
    "paper_fn",
    "paper_tn",
]
#: The paper's Tables 4-9, each numbered as in the paper.
PAPER_TABLES = {
    "table4_self_learning.md": "# Table 4: tile labels per self-learning round",
    "table5_cnn.md": "# Table 5: CNN metrics",
    "table6_hybrid.md": "# Table 6: hybrid CNN-LSTM metrics",
    "table7_cnn_confusion.md": "# Table 7: CNN confusion matrices (benign positive)",
    "table8_hybrid_confusion.md": "# Table 8: hybrid CNN-LSTM confusion matrices (benign positive)",
    "table9_comparison.md": "# Table 9: comparison with the paper and other work",
}


def protocol_sections(text: str) -> dict[str, str]:
    """The ``## `` sections of a table file by protocol."""
    sections = {}
    for chunk in text.split("\n## ")[1:]:
        protocol = "patient" if chunk.startswith("Patient-wise") else "random-tile"
        sections[protocol] = chunk
    return sections


def check_paper_tables(
    out: Path, rows: list[tuple[str, str]], *, figures: bool = True
) -> list[dict]:
    """Check Tables 4-9, metrics.csv and the figures against the expected (protocol, model)
    rows of 40X; return results.json."""
    for name, title in PAPER_TABLES.items():
        assert (out / name).read_text().startswith(title), name
    tables = json.loads((out / "tables.json").read_text())
    assert sorted(tables) == [f"table{n}" for n in range(4, 10)]

    with (out / "metrics.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == METRICS_COLUMNS
    assert [(row["protocol"], row["model"]) for row in table] == rows
    for row in table:
        assert row["magnification"] == "40X"
        assert row["level"] == (
            "image" if row["protocol"] == "patient" else "tile (corrected labels)"
        )
        for metric in ("accuracy", "sensitivity", "specificity", "precision", "f1"):
            assert 0.0 <= float(row[metric]) <= 1.0
        assert math.isnan(float(row["auc"])) or 0.0 <= float(row["auc"]) <= 1.0
        assert sum(int(row[k]) for k in ("tp", "fp", "fn", "tn")) == int(row["n"]) > 0
        # The paper's convention: benign positive (counts swapped), class-weighted averages,
        # so that its sensitivity and specificity both equal the accuracy.
        assert (row["paper_tp"], row["paper_fn"]) == (row["tn"], row["fp"])
        for metric in ("paper_accuracy", "paper_sensitivity", "paper_specificity"):
            assert float(row[metric]) == pytest.approx(float(row["accuracy"]))

    results = json.loads((out / "results.json").read_text())
    assert [(entry["protocol"], entry["model"]) for entry in results] == rows
    assert all(entry["magnification"] == "40X" for entry in results)
    for entry in results:
        share = entry["info"]["n_test"] / (entry["info"]["n_train"] + entry["info"]["n_test"])
        if entry["protocol"] == "random-tile":  # the paper's 20 % of the tiles
            assert entry["test_size"] == 0.2 and share == pytest.approx(0.2, abs=0.01)
        else:
            assert entry["test_size"] == 0.25

    # Tables 5-8: every row in its table (CNN or hybrid), under its protocol; 7-8 hold
    # TP/FP/FN/TN (benign positive) that sum to the test samples of the row.
    for kind, metrics_file, confusion_file in (
        ("CNN", "table5_cnn.md", "table7_cnn_confusion.md"),
        ("CNN-LSTM", "table6_hybrid.md", "table8_hybrid_confusion.md"),
    ):
        metrics_sections = protocol_sections((out / metrics_file).read_text())
        confusion_sections = protocol_sections((out / confusion_file).read_text())
        for entry in results:
            if entry["model"].split()[1] != kind:
                continue
            protocol = entry["protocol"]
            assert "Paper's convention" in metrics_sections[protocol]
            assert "skhybrid's convention (malignant positive)" in metrics_sections[protocol]
            assert metrics_sections[protocol].count(f"| {entry['model']} | 40X |") == 2
            header, body = markdown_table(confusion_sections[protocol], "| Model |")
            assert header == ["Model", "Magnification", "TP", "FP", "FN", "TN", "Total"]
            (cells,) = [r for r in body if r[:2] == [entry["model"], "40X"]]
            counts = dict(zip(header[2:], map(int, cells[2:])))
            assert counts["TP"] + counts["FP"] + counts["FN"] + counts["TN"] == counts["Total"]
            assert counts["Total"] == entry["info"]["n_test"]
            assert counts == {**entry["paper_confusion"], "Total": entry["info"]["n_test"]}
    table9 = (out / "table9_comparison.md").read_text()
    assert "| 99.76 |" in table9 and "BHCNet" in table9 and "92.5" in table9
    for _, model in rows:
        assert f"| {model} | 40X |" in table9

    if figures:
        for name in (
            "figure9_roc_40X.png",
            "figure10_precision_recall_40X.png",
            "figure11_training_loss_40X.png",
            "figure12_training_accuracy_40X.png",
        ):
            assert_png(out / name)
        kinds = {model.split()[1] for _, model in rows}
        assert (out / "figure6_cnn_accuracy.png").exists() == ("CNN" in kinds)
        assert (out / "figure7_hybrid_accuracy.png").exists() == ("CNN-LSTM" in kinds)
    return results


def test_reproduce_paper_magnifications(reproduce_paper: ModuleType) -> None:
    normalise = reproduce_paper.normalise_magnification
    for spelling in ("40", "40x", "40X", " 40x "):
        assert normalise(spelling) == "40X"
    assert [normalise(m) for m in ("100", "200x", "400X")] == ["100X", "200X", "400X"]
    for bad in ("50", "40XX", "x40", "forty", "", "4 0", "040"):
        assert normalise(bad) is None
    args = reproduce_paper.parse_args(["--magnifications", "40", "100x", "40X", "400X"])
    assert args.magnifications == ["40X", "100X", "400X"]  # normalised, duplicates dropped


def test_reproduce_paper_rejects_bad_magnification(
    reproduce_paper: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        reproduce_paper.parse_args(["--quick", "--magnifications", "40X", "50"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no usage block
    assert "invalid magnification '50'" in err and "40X, 100X, 200X or 400X" in err


def test_reproduce_paper_quick_only_changes_defaults(reproduce_paper: ModuleType) -> None:
    full = reproduce_paper.parse_args([])
    assert (full.magnifications, full.backbones) == (
        ["40X", "100X", "200X", "400X"],
        ["vgg19", "googlenet", "resnet101"],
    )
    assert (full.tile_size, full.epochs, full.batch_size) == (224, 100, 128)
    assert (full.n_images, full.image_size) == (120, (230, 350))
    assert full.relabel_with == "features"

    quick = reproduce_paper.parse_args(["--quick"])
    assert (quick.magnifications, quick.backbones) == (["40X"], ["resnet18"])
    assert (quick.tile_size, quick.epochs, quick.batch_size) == (32, 2, 32)
    assert (quick.n_images, quick.image_size) == (48, (96, 144))

    given = reproduce_paper.parse_args(
        [
            *("--quick", "--magnifications", "200", "--backbones", "resnet34"),
            *("--tile-size", "48", "--epochs", "7", "--batch-size", "16", "--n-images", "30"),
            *("--image-size", "64", "96", "--relabel-with", "model"),
        ]
    )
    assert (given.magnifications, given.backbones) == (["200X"], ["resnet34"])
    assert (given.tile_size, given.epochs, given.batch_size) == (48, 7, 16)
    assert (given.n_images, given.image_size) == (30, (64, 96))
    assert given.relabel_with == "model"
    # Presets are copied, never shared with (or mutated through) the parsed arguments.
    assert reproduce_paper.QUICK_PRESET["magnifications"] == ["40X"]


def test_reproduce_paper_freeze_epochs_as_cli(reproduce_paper: ModuleType) -> None:
    from skhybrid.cli import _build_parser, _classifier_params
    from skhybrid.workflow import classifier_defaults

    pretrained = classifier_defaults()["freeze_epochs"]  # the estimators' own default

    for weights in ("none", "imagenet"):
        args = reproduce_paper.parse_args(["--weights", weights])
        ours = reproduce_paper.classifier_params(args, "resnet101")
        cli_args = _build_parser().parse_args(["train", "data", "--weights", weights])
        theirs = _classifier_params(cli_args, demo=False)
        assert (
            ours["freeze_epochs"]
            == theirs["freeze_epochs"]
            == (pretrained if weights != "none" else 0)
        )
        assert ours["lr"] == theirs["lr"]
    explicit = reproduce_paper.parse_args(["--weights", "imagenet", "--freeze-epochs", "0"])
    assert reproduce_paper.classifier_params(explicit, "vgg19")["freeze_epochs"] == 0


def test_reproduce_paper_row_names(reproduce_paper: ModuleType) -> None:
    row_name = reproduce_paper.row_name
    assert row_name("resnet101", "hybrid", 0) == "resnet101 CNN-LSTM"
    assert row_name("vgg19", "cnn", 4) == "vgg19 CNN + self-learning"
    # Several round counts compared: the rows must not collide.
    assert row_name("vgg19", "cnn", 1, show_rounds=True) == "vgg19 CNN + self-learning (1 round)"
    assert row_name("vgg19", "cnn", 4, show_rounds=True) == "vgg19 CNN + self-learning (4 rounds)"


def test_reproduce_paper_conventions_reproduce_the_papers_row(reproduce_paper: ModuleType) -> None:
    """Table 8's ResNet101+LSTM 100X counts give Table 6's printed 99.76 in the paper's
    convention, and the benign-positive counts back; skhybrid's convention differs."""
    from skhybrid.metrics import binary_report

    paper = reproduce_paper.PAPER_RESULTS[0]
    counts = paper["confusion"]  # benign positive
    # The same predictions with skhybrid's roles (malignant positive): TP and TN swap.
    y_true = ["malignant"] * counts["TN"] + ["benign"] * counts["FN"]
    y_true += ["malignant"] * counts["FP"] + ["benign"] * counts["TP"]
    y_pred = ["malignant"] * (counts["TN"] + counts["FN"])
    y_pred += ["benign"] * (counts["FP"] + counts["TP"])
    report = binary_report(y_true, y_pred)
    assert reproduce_paper.paper_confusion(report) == counts
    ours = reproduce_paper.paper_convention(report, "benign", "malignant")
    for metric in ("accuracy", "sensitivity", "specificity"):
        assert round(ours[metric], 2) == paper[metric] == 99.76
    # Malignant positive: the recalls of each class, not the paper's figures.
    assert (round(100 * report.sensitivity, 2), round(100 * report.specificity, 2)) == (
        99.81,
        99.69,
    )


def test_reproduce_paper_test_size(reproduce_paper: ModuleType, capsys) -> None:
    from skhybrid.workflow import DEFAULT_TEST_SIZE

    args = reproduce_paper.parse_args([])
    assert args.test_size is None
    assert reproduce_paper.held_out_share(args, "random-tile") == 0.2  # the paper's share
    assert reproduce_paper.held_out_share(args, "patient") == 0.25 == DEFAULT_TEST_SIZE["patient"]
    given = reproduce_paper.parse_args(["--test-size", "0.3"])
    assert [reproduce_paper.held_out_share(given, p) for p in ("random-tile", "patient")] == [
        0.3,
        0.3,
    ]
    for bad in ("0", "0.6", "abc"):
        with pytest.raises(SystemExit) as exited:
            reproduce_paper.parse_args(["--test-size", bad])
        assert exited.value.code == 2
    assert "--test-size" in capsys.readouterr().err


def test_reproduce_paper_synthetic(tmp_path: Path) -> None:
    """--quick with explicit smaller sizes: the explicit options win; both protocols."""
    out = tmp_path / "tables"
    stdout = run_example(
        "reproduce_paper.py",
        *("--quick", "--magnifications", "40x", "--models", "cnn", "--self-learning", 0, 2),
        *("--epochs", 1, "--n-images", 32, "--out", out),
        cwd=tmp_path,
    )

    assert stdout.startswith(
        "quick settings: synthetic, 32 images of 96x144; magnifications 40X; backbones "
        "resnet18; tiles 32x32; epochs 1; batch 32; relabel with features"
    )
    models = ["resnet18 CNN", "resnet18 CNN + self-learning"]
    rows = [(protocol, model) for protocol in ("random-tile", "patient") for model in models]
    results = check_paper_tables(out, rows)
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [
            *PAPER_TABLES,
            "tables.json",
            "metrics.csv",
            "results.json",
            "figure6_cnn_accuracy.png",  # no hybrid rows: no Figure 7
            "figure9_roc_40X.png",
            "figure10_precision_recall_40X.png",
            "figure11_training_loss_40X.png",
            "figure12_training_accuracy_40X.png",
        ]
    )
    assert "No hybrid CNN-LSTM rows" in (out / "table6_hybrid.md").read_text()
    assert "Not drawn (no rows, or a test set of one class): figure7_hybrid_accuracy.png" in stdout
    for entry in results:
        params = entry["info"]["classifier_params"]
        assert (params["max_epochs"], params["batch_size"], params["freeze_epochs"]) == (1, 32, 0)
        assert entry["info"]["tile_shape"] == [32, 32]
        assert entry["info"]["n_images"] == 32
        assert entry["info"]["relabel_with"] == "features"
    # The synthetic data know the true tile labels: self-learning must not make them worse.
    patient = next(e for e in results if e["protocol"] == "patient" and e["self_learning_history"])
    accuracy = patient["tile_label_accuracy"]
    assert 0.5 < accuracy["inherited"] <= accuracy["corrected"] <= 1.0

    table4 = (out / "table4_self_learning.md").read_text()
    assert "(`--relabel-with features`)" in table4
    for protocol in ("random-tile", "patient"):
        assert f"## 40X, {protocol} protocol" in table4
    header, body = markdown_table(table4, "| Round |")
    assert header[-1] == "Tile accuracy" and [row[0] for row in body] == ["0 (inherited)", "1", "2"]
    assert len(set(int(row[1]) + int(row[2]) for row in body)) == 1  # tiles are kept


def test_reproduce_paper_breakhis(tmp_path: Path, breakhis_sample: Path) -> None:
    """The real sample's 40X images (10 of them), both protocols, one tiny training each."""
    out = tmp_path / "tables"
    stdout = run_example(
        "reproduce_paper.py",
        *("--data-dir", breakhis_sample, "--quick", "--magnifications", "40"),
        *("--models", "cnn", "--self-learning", 2, "--epochs", 1, "--out", out),
        cwd=tmp_path,
    )

    assert "=== 40X: BreakHis 40X, 10 images" in stdout
    rows = [(p, "resnet18 CNN + self-learning") for p in ("random-tile", "patient")]
    # Ten images: a test set may hold one class only, so the curves are not required.
    results = check_paper_tables(out, rows, figures=False)
    assert "Data: 40X: BreakHis 40X." in (out / "table5_cnn.md").read_text()
    for entry in results:
        assert entry["info"]["n_images"] == 10
        assert entry["tile_label_accuracy"] == {}  # no ground-truth tile labels on BreakHis
        history = entry["self_learning_history"]
        assert 2 <= len(history) <= 3  # round 0 (inherited) and up to 2 rounds
    patient = results[1]
    assert patient["info"]["n_train"] + patient["info"]["n_test"] == 10
    assert 0.0 <= patient["patient_score"] <= 1.0


@pytest.mark.slow
def test_reproduce_paper_quick(tmp_path: Path) -> None:
    """The documented smoke test, ``--quick`` alone: 8 trainings."""
    out = tmp_path / "paper-quick"
    stdout = run_example("reproduce_paper.py", "--quick", "--out", out, cwd=tmp_path)

    assert stdout.startswith(
        "quick settings: synthetic, 48 images of 96x144; magnifications 40X; backbones "
        "resnet18; tiles 32x32; epochs 2; batch 32; relabel with features"
    )
    models = [
        "resnet18 CNN",
        "resnet18 CNN + self-learning",
        "resnet18 CNN-LSTM",
        "resnet18 CNN-LSTM + self-learning",
    ]
    rows = [(protocol, model) for protocol in ("random-tile", "patient") for model in models]
    results = check_paper_tables(out, rows)
    assert all(entry["info"]["classifier_params"]["max_epochs"] == 2 for entry in results)
    assert re.search(r"Wrote tables and figures to .* in \d+ s", stdout)
    assert (out / "figure7_hybrid_accuracy.png").is_file()
    # Training accuracy is recorded per epoch, for Figure 12.
    assert all(len(e["history"]) == 2 and "train_acc" in e["history"][0] for e in results)


@pytest.mark.slow
def test_reproduce_paper_relabel_with_model(tmp_path: Path) -> None:
    """``--relabel-with model``: the network proposes the corrections, one history per row."""
    out = tmp_path / "tables"
    stdout = run_example(
        "reproduce_paper.py",
        *("--quick", "--models", "cnn", "--self-learning", 2, "--protocols", "patient"),
        *("--relabel-with", "model", "--epochs", 1, "--out", out),
        cwd=tmp_path,
    )

    assert "relabel with model" in stdout.splitlines()[0]
    (entry,) = check_paper_tables(out, [("patient", "resnet18 CNN + self-learning")])
    assert entry["info"]["relabel_with"] == "model"
    assert 2 <= len(entry["self_learning_history"]) <= 3  # round 0 and up to 2 rounds
    table4 = (out / "table4_self_learning.md").read_text()
    assert "proposed by the network being trained (`--relabel-with model`)" in table4
    assert "## 40X, patient protocol, resnet18 CNN + self-learning" in table4
