"""Long runs on real folders survive bad files: ``--on-error``, ``--overwrite``, progress,
``--device`` / ``--batch-size``, and how odd image modes are read (one rule, ``to_rgb_image``).

The fault folder holds good BreakHis images plus, under BreakHis names, a truncated PNG, a
zero-byte file, a text file called .png, and RGBA / greyscale / 16-bit PNGs (converted, so
scored), and a valid image with a non-BreakHis name.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _breakhis_tree import breakhis_name, breakhis_path, make_breakhis_tree, write_truncated_png
from PIL import Image

from skhybrid._images import UnreadableImageError, load_rgb, one_image
from skhybrid.cli import main
from skhybrid.datasets import load_breakhis

TINY_MODEL = [
    "--recipe",
    "paper",
    "--backbone",
    "resnet18",
    "--weights",
    "none",
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "-q",
]
SIZE = (46, 70)
N_GOOD = 16  # make_breakhis_tree(n_per_class=8)


def _one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"skhybrid {command}: error: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def good_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good")
    make_breakhis_tree(root, n_per_class=8, image_size=SIZE, magnifications=(40,))
    return root


def _name(sequence: int, malignant: bool = False) -> str:
    return breakhis_name(malignant, "DC" if malignant else "F", "777AB", 40, sequence=sequence)


@pytest.fixture(scope="module")
def fault_tree(good_tree, tmp_path_factory) -> dict:
    """A copy of ``good_tree`` plus every kind of bad or odd file; returns the paths by kind."""
    root = tmp_path_factory.mktemp("faults") / "tree"
    shutil.copytree(good_tree, root)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)

    def place(sequence: int, malignant: bool = False) -> Path:
        path = breakhis_path(root, _name(sequence, malignant))
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    files = {"truncated": write_truncated_png(place(901), rgb)}
    files["empty"] = place(902)
    files["empty"].write_bytes(b"")
    files["text"] = place(903, malignant=True)
    files["text"].write_text("this is not an image\n")
    rgba = np.dstack([rgb, np.full(SIZE, 255, np.uint8)])
    rgba[0, 0, 3] = 0  # one transparent pixel: read as white
    files["rgba"] = place(904, malignant=True)
    Image.fromarray(rgba, "RGBA").save(files["rgba"])
    files["grey"] = place(905)
    Image.fromarray(np.full(SIZE, 100, np.uint8), "L").save(files["grey"])
    files["sixteen"] = place(906, malignant=True)
    Image.fromarray(np.full(SIZE, 65535, np.uint16)).save(files["sixteen"])
    files["bad_name"] = root / "BreaKHis_v1" / "notes" / "scan_0001.png"
    files["bad_name"].parent.mkdir(parents=True)
    Image.fromarray(rgb).save(files["bad_name"])
    return {"root": root, **files}


UNREADABLE = ("truncated", "empty", "text")
CONVERTED = ("rgba", "grey", "sixteen")


@pytest.fixture(scope="module")
def model(good_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model")
    argv = ["train", str(good_tree), "--tile-size", "16", "--self-learning-rounds", "0"]
    assert main([*argv, "--out", str(out), "--test-size", "0.5", *TINY_MODEL]) == 0
    return out / "model.joblib"


# -- how image files are read -------------------------------------------------------------------
def test_odd_modes_are_converted_as_documented(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((4, 5), 255, np.uint8)])
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    read = load_rgb(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read[1:], rgb[1:])  # opaque pixels unchanged
    np.testing.assert_array_equal(read[0, 0], [255, 255, 255])  # transparent: white
    half = (rgb[0, 1].astype(int) * 128 + 255 * 127 + 127) // 255  # composited on white
    np.testing.assert_allclose(read[0, 1], half, atol=1)

    Image.fromarray(np.full((4, 5), 100, np.uint8), "L").save(tmp_path / "grey.png")
    assert load_rgb(tmp_path / "grey.png").tolist() == [[[100] * 3] * 5] * 4

    la = np.zeros((4, 5, 2), np.uint8)
    la[..., 0], la[..., 1] = 50, 255
    la[0, 0, 1] = 0
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    read = load_rgb(tmp_path / "la.png")
    assert read[0, 0].tolist() == [255] * 3 and read[1, 1].tolist() == [50] * 3

    sixteen = np.full((4, 5), 65535, np.uint16)
    sixteen[0, 0], sixteen[0, 1] = 1000, 0
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode == "I;16"
    read = load_rgb(tmp_path / "sixteen.png")
    assert read.dtype == np.uint8 and read.shape == (4, 5, 3)
    # >> 8, not Pillow's clipping (which reads 1000 as 255)
    assert read[0, 0].tolist() == [3] * 3 and read[0, 1].tolist() == [0] * 3
    assert read[1, 1].tolist() == [255] * 3

    palette = Image.fromarray(rgb).convert("P")
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(
        load_rgb(tmp_path / "palette.png"), np.asarray(palette.convert("RGB"))
    )
    # A PIL image given to the estimators is converted by the same rule.
    assert one_image(Image.open(tmp_path / "sixteen.png"), 0)[0, 0].tolist() == [3] * 3


def test_modes_without_a_right_scale_are_refused(tmp_path):
    Image.fromarray(np.full((4, 5), 0.5, np.float32), "F").save(tmp_path / "float.tif")
    with pytest.raises(UnreadableImageError, match="floating-point.*8-bit RGB"):
        load_rgb(tmp_path / "float.tif")
    Image.fromarray(np.full((4, 5), 70000, np.int32), "I").save(tmp_path / "wide.tif")
    with pytest.raises(UnreadableImageError, match="outside 0..65535"):
        load_rgb(tmp_path / "wide.tif")


def test_load_breakhis_reads_odd_modes_like_load_rgb_and_gives_reasons(fault_tree):
    with pytest.warns(UserWarning, match="Skipping"):  # the library warns; the CLI lists
        data = load_breakhis(fault_tree["root"], image_size=SIZE, on_error="skip", verbose=False)
    assert len(data.target) == N_GOOD + len(CONVERTED)
    for kind in CONVERTED:
        row = list(data.filenames).index(str(fault_tree[kind].resolve()))
        np.testing.assert_array_equal(data.images[row], load_rgb(fault_tree[kind]))
    reasons = {Path(e["file"]).name: e["reason"] for e in data.skip_reasons}
    assert [e["file"] for e in data.skip_reasons] == data.skipped
    assert set(reasons) == {fault_tree[k].name for k in (*UNREADABLE, "bad_name")}
    assert "not a BreakHis file name" in reasons["scan_0001.png"]
    assert "truncated" in reasons[fault_tree["truncated"].name]
    assert "cannot identify image file" in reasons[fault_tree["empty"].name]


# -- evaluate and predict skip bad files, name them, and exit 1 --------------------------------
def test_evaluate_scores_the_good_images_and_names_the_bad(model, fault_tree, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", str(model), str(fault_tree["root"]), "--out", str(out), "-q"])
    assert code == 1
    captured = capsys.readouterr()
    assert "Patient recognition rate" in captured.out  # the report of the good images
    report = json.loads((out / "report.json").read_text())
    assert report["reports"]["image"]["n"] == N_GOOD + len(CONVERTED)
    assert report["info"]["n_images"] == N_GOOD + len(CONVERTED)
    skipped = {Path(e["file"]).name: e["reason"] for e in report["skipped"]}
    assert set(skipped) == {fault_tree[k].name for k in (*UNREADABLE, "bad_name")}
    assert report["info"]["n_skipped"] == 4
    assert "not a BreakHis file name" in skipped["scan_0001.png"]
    assert all(reason for reason in skipped.values())
    for kind in (*UNREADABLE, "bad_name"):
        assert f"skipped {fault_tree[kind].resolve()}: " in captured.err, kind
    assert f"4 of {N_GOOD + 7} file(s) skipped" in captured.err


def test_evaluate_of_a_clean_folder_exits_0_with_an_empty_skipped_list(
    model, good_tree, tmp_path, capsys
):
    out = tmp_path / "eval"
    assert main(["evaluate", str(model), str(good_tree), "--out", str(out), "-q"]) == 0
    assert json.loads((out / "report.json").read_text())["skipped"] == []
    assert capsys.readouterr().err == ""


def test_evaluate_on_error_raise_stops_at_the_first_bad_file(model, fault_tree, capsys):
    argv = ["evaluate", str(model), str(fault_tree["root"]), "-q", "--on-error", "raise"]
    assert main(argv) == 1
    line = _one_line_error(capsys.readouterr().err, "evaluate")
    assert "scan_0001.png" in line and "not a BreakHis file name" in line


def test_predict_a_folder_gives_every_readable_image(model, fault_tree, capsys):
    code = main(["predict", str(model), str(fault_tree["root"]), "--json"])
    assert code == 1
    captured = capsys.readouterr()
    results = json.loads(captured.out)  # stdout stays pure JSON
    names = {Path(r["image"]).name for r in results}
    # predict needs no BreakHis name: the scan is scored too
    assert len(results) == N_GOOD + len(CONVERTED) + 1
    assert {fault_tree[k].name for k in (*CONVERTED, "bad_name")} <= names
    assert not names & {fault_tree[k].name for k in UNREADABLE}
    for entry in results:
        assert sum(entry["probability"].values()) == pytest.approx(1.0, abs=1e-3)
    for kind in UNREADABLE:
        assert f"skipped {fault_tree[kind]}: " in captured.err
    assert "truncated" in captured.err and "cannot identify image file" in captured.err
    assert f"3 of {N_GOOD + 7} file(s) skipped" in captured.err


def test_predict_expands_globs_and_skips_missing_files(model, fault_tree, capsys):
    pattern = str(fault_tree["root"] / "**" / "*-906.png")  # the 16-bit one
    missing = str(fault_tree["root"] / "missing.png")
    assert main(["predict", str(model), pattern, missing, "--json"]) == 1
    captured = capsys.readouterr()
    (entry,) = json.loads(captured.out)
    assert entry["image"] == str(fault_tree["sixteen"])
    assert f"skipped {missing}: file not found" in captured.err
    # The same with --on-error raise: nothing is scored, one line names the missing file.
    assert main(["predict", str(model), pattern, missing, "--on-error", "raise"]) == 1
    line = _one_line_error(capsys.readouterr().err, "predict")
    assert "image file(s) not found" in line and "missing.png" in line


def test_predict_on_error_raise_names_the_unreadable_file(model, fault_tree, capsys):
    files = [str(fault_tree["grey"]), str(fault_tree["truncated"])]
    assert main(["predict", str(model), *files, "--on-error", "raise"]) == 1
    line = _one_line_error(capsys.readouterr().err, "predict")
    assert f"Cannot read image {fault_tree['truncated']}" in line


def test_train_on_error_raise_is_the_default_and_names_the_first_bad_file(
    fault_tree, tmp_path, capsys
):
    argv = ["train", str(fault_tree["root"]), "--out", str(tmp_path / "m"), *TINY_MODEL]
    assert main(argv) == 1
    line = _one_line_error(capsys.readouterr().err, "train")
    assert "scan_0001.png" in line and "not a BreakHis file name" in line
    assert not (tmp_path / "m").exists()  # stopped before training


def test_train_on_error_raise_names_an_unreadable_image(good_tree, tmp_path, capsys):
    root = tmp_path / "tree"
    shutil.copytree(good_tree, root)
    bad = write_truncated_png(breakhis_path(root, _name(901)), np.zeros((*SIZE, 3), np.uint8))
    assert main(["train", str(root), "--out", str(tmp_path / "m"), *TINY_MODEL]) == 1
    line = _one_line_error(capsys.readouterr().err, "train")
    assert f"Cannot read image {bad.resolve()}" in line


# -- output folders -----------------------------------------------------------------------------
def test_a_used_out_folder_is_refused_without_overwrite(model, good_tree, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", str(model), str(good_tree), "--out", str(out), "-q"]
    assert main(argv) == 0
    first = (out / "report.json").read_text()
    capsys.readouterr()
    assert main(argv) == 1
    line = _one_line_error(capsys.readouterr().err, "evaluate")
    assert "already holds another run's outputs (report.json" in line and "--overwrite" in line
    assert (out / "report.json").read_text() == first  # untouched
    # --overwrite replaces the outputs and removes the earlier run's extra files.
    (out / "self_learning_history.md").write_text("an earlier training run's table\n")
    assert main([*argv, "--overwrite"]) == 0
    assert not (out / "self_learning_history.md").exists()
    assert json.loads((out / "report.json").read_text())["skipped"] == []
    # Files that are not a run's outputs do not make a folder "used".
    other = tmp_path / "notes"
    other.mkdir()
    (other / "README.txt").write_text("mine")
    assert main(["evaluate", str(model), str(good_tree), "--out", str(other), "-q"]) == 0


def test_train_into_a_used_folder_is_refused_before_loading(model, capsys):
    # The folder that holds `model`: refused before any image is read (the data folder
    # does not even exist). The run there finished, so the message offers --overwrite, not
    # --resume (an interrupted run's folder offers both: tests/test_cli_resume.py).
    argv = ["train", "/no/such/folder", "--out", str(model.parent), *TINY_MODEL]
    assert main(argv) == 1
    line = _one_line_error(capsys.readouterr().err, "train")
    assert "model.joblib" in line and "--overwrite" in line and "--resume" not in line


def test_predict_refuses_to_replace_overlays_without_overwrite(model, good_tree, tmp_path, capsys):
    image = str(sorted(good_tree.rglob("*.png"))[0])
    argv = ["predict", str(model), image, "--overlay", str(tmp_path), "--json"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 1
    line = _one_line_error(capsys.readouterr().err, "predict")
    assert "--overwrite" in line
    assert main([*argv, "--overwrite"]) == 0


# -- progress, device and batch size ------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_progress_bar_on_a_terminal_unless_quiet(command, model, good_tree, monkeypatch):
    def stderr_of(*extra: str) -> str:
        terminal = _Terminal()
        monkeypatch.setattr("sys.stderr", terminal)
        monkeypatch.setenv("NO_COLOR", "")
        assert main([command, str(model), str(good_tree), *extra]) == 0
        monkeypatch.undo()
        return terminal.getvalue()

    bar = stderr_of()
    assert f"{N_GOOD}/{N_GOOD}" in bar and "img" in bar
    assert stderr_of("-q") == ""


def test_device_and_batch_size_change_the_loaded_model_not_the_answers(
    model, good_tree, monkeypatch, capsys
):
    from skhybrid import cli

    seen = []
    original = cli._set_runtime

    def spy(loaded, device, batch_size):
        result = original(loaded, device, batch_size)
        seen.append(result.steps[-1][1])
        return result

    monkeypatch.setattr(cli, "_set_runtime", spy)
    argv = ["predict", str(model), str(good_tree), "--json", "-q"]
    assert main(argv) == 0
    default = json.loads(capsys.readouterr().out)
    assert main([*argv, "--device", "cpu", "--batch-size", "9"]) == 0
    changed = json.loads(capsys.readouterr().out)
    assert seen[0].batch_size == 32 and seen[1].batch_size == 9  # 9 tiles: 1 image a pass
    # On the CPU: "auto" and "cpu" are the same device here (the device mixin keeps "auto"
    # when the new value is what "auto" resolves to), the tensors are on it.
    assert str(seen[1].device_) == "cpu"
    assert {p.device.type for p in seen[1].module_.parameters()} == {"cpu"}
    assert len(changed) == len(default) == N_GOOD
    for a, b in zip(default, changed):
        assert a["image"] == b["image"] and a["label"] == b["label"]
        for c in a["probability"]:
            assert a["probability"][c] == pytest.approx(b["probability"][c], abs=2e-4)


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "m.joblib", "data", "--on-error", "ignore"],
        ["predict", "m.joblib", "x.png", "--batch-size", "0"],
        ["predict", "m.joblib", "x.png", "--device", "nonsense"],
    ],
)
def test_bad_new_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
