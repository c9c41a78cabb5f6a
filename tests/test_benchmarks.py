"""The benchmark runner works, and a benchmark that cannot run is reported, not fatal.

Speed is never asserted here: only the shape of the results and the runner's behaviour.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a top-level folder, not part of the package
    sys.path.insert(0, str(ROOT))

benchmarks = pytest.importorskip("benchmarks")
from benchmarks import _common, run_benchmarks, summary  # noqa: E402
from benchmarks.__main__ import main  # noqa: E402

REQUIRED = {"name", "value", "reference", "ratio", "goal", "unit", "met", "status", "benchmark"}


def _module(run) -> types.ModuleType:
    module = types.ModuleType("fake_bench")
    module.run = run
    return module


def _needs_missing_module(quick):
    import skhybrid._no_such_module  # noqa: F401  # an estimator module that has not landed


def _needs_skip(quick):
    raise _common.SkipBenchmark("cleanlab is not installed")


def _broken(quick):
    raise ZeroDivisionError("oops")


def _fine(quick):
    return [
        _common.make_row("fast", 4.0, 2.0, "items/s", goal=1.5),
        _common.make_row("small", 3.0, 2.0, "MB", goal=1.25, goal_op="<="),
        _common.make_row("absolute", 250.0, 100.0, "images/s", goal=300, goal_on="value"),
    ]


def test_rows_skips_and_errors_are_reported():
    rows = run_benchmarks(
        mode="smoke",
        modules={
            "fine": _module(_fine),
            "missing": _module(_needs_missing_module),
            "skip": _module(_needs_skip),
            "broken": _module(_broken),
        },
        log=lambda msg: None,
    )
    by_name = {row["name"]: row for row in rows}
    assert by_name["fast"]["ratio"] == 2.0 and by_name["fast"]["met"] is True
    assert by_name["small"]["ratio"] == 1.5 and by_name["small"]["met"] is False
    assert by_name["absolute"]["met"] is False  # the goal is on the value, not the ratio
    assert by_name["missing"]["status"] == "skipped"
    assert "skhybrid._no_such_module" in by_name["missing"]["note"]
    assert by_name["skip"]["status"] == "skipped"
    assert "cleanlab" in by_name["skip"]["note"]
    assert by_name["broken"]["status"] == "error"
    assert "ZeroDivisionError" in by_name["broken"]["note"]
    assert all(set(row) >= REQUIRED for row in rows)
    assert summary(rows) == {"met": 1, "missed": 2, "info": 0, "skipped": 2, "error": 1}
    table = _common.format_table(rows)
    assert table.count("\n") == len(rows) + 1
    assert "skipped" in table and "**no**" in table


def test_unknown_benchmark_is_rejected():
    with pytest.raises(ValueError, match="Unknown benchmark"):
        run_benchmarks(["nope"], mode="smoke", modules={"fine": _module(_fine)}, log=print)


def test_discovery_finds_the_benchmark_modules():
    names = benchmarks.discover()
    assert {"tiling", "memory", "backbones"} <= set(names)


def test_command_line_runs_the_tiler_benchmark_in_smoke_mode(tmp_path, capsys):
    status = main(["--smoke", "--only", "tiling", "--out", str(tmp_path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "| benchmark |" in out and "tiling: SubImageTiler" in out
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["mode"] == "smoke"
    assert {"cpu", "cores_usable", "torch", "torch_threads", "bf16_supported"} <= set(
        payload["machine"]
    )
    rows = payload["rows"]
    assert rows and all(set(row) >= REQUIRED for row in rows)
    tiler = next(row for row in rows if row["name"].startswith("tiling: SubImageTiler"))
    assert tiler["status"] == "ok" and tiler["value"] > 0 and tiler["reference"] > 0
    assert tiler["goal"] == 300 and isinstance(tiler["met"], bool)
    # the fast path is checked against the previous implementation in the same run
    previous = next(row for row in rows if "previous" in row["name"])
    assert previous["note"] == "bit-identical: True"


def test_cuda_benchmark_reports_itself_skipped_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the benchmark runs for real (python -m benchmarks)")
    rows = run_benchmarks(["cuda"], mode="smoke", log=lambda message: None)
    assert [row["status"] for row in rows] == ["skipped"]
    assert "no CUDA device" in rows[0]["note"]


def test_cuda_benchmark_code_runs_on_the_cpu_and_its_loops_match_the_estimator(monkeypatch):
    """The CUDA benchmark's own code (estimator, reference loops) on the CPU at smoke size.

    No GPU is needed to keep it working between GPU runs: ``measure`` takes the device. The
    reference inference loop must give the estimator's probabilities, or the ratio compares
    different work.
    """
    from benchmarks import bench_cuda

    monkeypatch.setattr(_common, "MODE", "smoke")
    rows = bench_cuda.measure("cpu")
    names = [row["name"] for row in rows]
    assert names == [
        "CUDA: HybridCNNLSTMClassifier(resnet18).fit per epoch",
        "CUDA: HybridCNNLSTMClassifier(resnet18).predict_proba",
    ]
    assert [row["goal"] for row in rows] == [0.8, 0.9]
    assert all(row["value"] > 0 and row["reference"] > 0 for row in rows)
    agree = float(rows[1]["note"].rsplit(" ", 1)[-1])
    assert agree < 1e-5


def test_backbones_benchmark_rows_at_smoke_size(monkeypatch):
    """EfficientNet-Lite0, resnet18 and resnet101 against the conv peak, on the CPU, tiny."""
    pytest.importorskip("timm")
    from benchmarks import bench_backbones

    monkeypatch.setattr(_common, "MODE", "smoke")
    rows = bench_backbones.measure("cpu")
    assert [row["name"] for row in rows] == [
        f"backbones: {model} {kind} vs conv peak"
        if model != "lite"
        else f"backbones: efficientnet_lite0 vs resnet101 {kind}"
        for kind in ("inference forward", "training step")
        for model in (*bench_backbones.MODELS, "lite")
    ]
    peak = rows[0]["reference"]
    assert peak > 0 and all(row["value"] > 0 for row in rows)
    for row in rows:
        if row["unit"] == "GFLOP/s":  # the same measured peak for every model
            assert row["reference"] == peak and row["goal"] is None
        else:
            assert row["goal"] == 2.0 and isinstance(row["met"], bool)
        assert row["ratio"] == pytest.approx(row["value"] / row["reference"])


def test_backbones_benchmark_counts_depthwise_backward_flops_correctly():
    # torch's FlopCounterMode counts a grouped conv's backward as a dense one's; the benchmark
    # corrects it, so forward + backward is three forwards for a depthwise conv too.
    import torch

    from benchmarks.bench_backbones import _flops

    for groups in (1, 16):
        conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=groups)
        x = torch.randn(2, 16, 8, 8)
        forward = _flops(lambda conv=conv, x=x: conv(x))
        assert forward == 2 * 2 * 16 * (16 // groups) * 9 * 8 * 8
        assert _flops(lambda conv=conv, x=x: conv(x).sum().backward()) == 3 * forward


def test_whole_magnification_benchmark_rows_at_smoke_size(monkeypatch):
    """8 generated BreakHis files, listed, tiled, fitted and predicted in two subprocesses."""
    from benchmarks import bench_whole_magnification as bench

    monkeypatch.setattr(_common, "MODE", "smoke")
    rows = bench.run(quick=True)
    names = [row["name"] for row in rows]
    assert names == [
        "whole magnification: 8 images -> 72 tiles in memory, extra peak",
        "whole magnification: 8 images, tiles in memory, whole process",
        "whole magnification: projected peak of all 7909 images in memory",
        "whole magnification: 8 images, tiles memory-mapped (tile_to_memmap), anonymous extra peak",
    ]
    assert all(row["status"] == "ok" and row["value"] > 0 for row in rows)
    tiles = 8 * 9 * 224 * 224 * 3
    # The reference is the uint8 tiles + a (tiny) model + one float32 batch of 128 tiles.
    assert (
        tiles + bench._batch_bytes()
        < rows[0]["reference"] * 1e6
        < 1.01 * (tiles + bench._batch_bytes())
    )
    assert [row["goal"] for row in rows] == [1.5, None, 1.0, 1.25]
    assert rows[1]["value"] > rows[0]["value"]  # the whole process includes the baseline
    assert rows[3]["note"].endswith("same probabilities as in memory: True")


def test_the_generated_breakhis_tree_is_what_load_breakhis_reads(tmp_path):
    from benchmarks.bench_whole_magnification import write_breakhis_tree
    from skhybrid.datasets import load_breakhis

    write_breakhis_tree(tmp_path, 10)
    data = load_breakhis(tmp_path, magnification=40, load_images=False, verbose=False)
    assert len(data.filenames) == 10 and sorted(set(data.target)) == [0, 1]
    assert len(set(data.patient)) == 4 and set(data.magnification) == {"40X"}
    images = load_breakhis(tmp_path, verbose=False).images
    assert images.shape == (10, 460, 700, 3)
    assert len({image.tobytes() for image in images}) == 10  # every image distinct


def test_stain_shift_benchmark_tests_other_patients_of_the_other_lab():
    """Lab B test images are the held-out patients' tissue, restained; rows have their goals."""
    from benchmarks import bench_stain_shift

    data = bench_stain_shift.make_data(30)
    _, y_train, train_patients = data["train"]
    (images_a, y_a), (images_b, y_b) = data["test_a"], data["test_b"]
    assert not set(train_patients) & set(data["test_patient"])  # patient-wise
    assert set(y_train) == set(y_a) == {0, 1}  # both classes on both sides
    assert np.array_equal(y_a, y_b) and images_a.shape == images_b.shape
    # Lab B's stain: hematoxylin stronger, eosin paler, a warmer background (docs/datasets.md)
    assert np.abs(images_a.astype(float) - images_b).mean() > 5

    rows = bench_stain_shift.measure(
        30,
        epochs=1,
        cnn_configs=[bench_stain_shift.CNN_CONFIGS[0], bench_stain_shift.CNN_CONFIGS[3]],
        baseline_configs=bench_stain_shift.BASELINE_CONFIGS[:2],
    )
    assert [row["name"] for row in rows] == [
        f"stain shift: {model}, {config}: {metric} on lab B"
        for model, config in [
            ("resnet18", "none"),
            ("resnet18", "stain aug"),
            ("colour/texture", "none"),
            ("colour/texture", "macenko"),
        ]
        for metric in ("image accuracy", "ROC AUC")
    ]
    for row in rows:
        assert set(row) >= REQUIRED - {"benchmark"} and row["status"] == "ok"
        assert 0 <= row["value"] <= 1 and 0 <= row["reference"] <= 1
        remedy = ", none:" not in row["name"]
        if row["unit"] == "accuracy" and remedy:  # the goal: 90 % of the no-shift accuracy
            assert row["goal"] == 0.9 and row["met"] == (row["ratio"] >= 0.9)
        else:
            assert row["goal"] is None and row["met"] is None
    # Every row of a model compares with that model's no-shift figure (lab A, no remedy).
    for model in ("resnet18", "colour/texture"):
        accuracy = [r for r in rows if f": {model}," in r["name"] and r["unit"] == "accuracy"]
        assert len({r["reference"] for r in accuracy}) == 1
        assert f"accuracy {accuracy[0]['reference']:.3f}" in accuracy[0]["note"]
