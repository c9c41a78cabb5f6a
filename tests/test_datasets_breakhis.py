"""Tests of skhybrid.datasets.load_breakhis on generated BreakHis-shaped folders."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from _breakhis_tree import (
    breakhis_name,
    breakhis_path,
    make_breakhis_tree,
    write_png,
    write_truncated_png,
)
from PIL import Image
from sklearn.model_selection import GroupKFold

from skhybrid.datasets import load_breakhis, parse_breakhis_filename
from skhybrid.exceptions import DataError, PathNotFoundError, SkhybridError, UserError

SIZE = (46, 70)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, list[Path]]:
    """8 benign + 8 malignant images in the official layout; read-only for the tests."""
    root = tmp_path_factory.mktemp("breakhis")
    return root, make_breakhis_tree(root, n_per_class=8, image_size=SIZE)


@pytest.fixture
def tree_copy(tree, tmp_path) -> Path:
    """A private copy of the tree that a test may damage."""
    root = tmp_path / "copy"
    shutil.copytree(tree[0], root)
    return root


def load(root, **kwargs):
    kwargs.setdefault("image_size", SIZE)
    kwargs.setdefault("verbose", False)
    return load_breakhis(root, **kwargs)


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "SOB_B_A-14-22549AB-40-001.png",
            (False, "adenosis", "40X", "SOB_B_A_14-22549AB", "22549"),
        ),
        (
            "SOB_M_DC-14-2523-400-010.png",
            (True, "ductal_carcinoma", "400X", "SOB_M_DC_14-2523", "2523"),
        ),
        (
            "SOB_B_TA-14-3411F-100-001.PNG",
            (False, "tubular_adenoma", "100X", "SOB_B_TA_14-3411F", "3411"),
        ),
        (
            "SOB_M_PC-15-190EF-200-015.png",
            (True, "papillary_carcinoma", "200X", "SOB_M_PC_15-190EF", "190"),
        ),
    ],
)
def test_parse_breakhis_filename(name, expected):
    parsed = parse_breakhis_filename(Path("/somewhere") / name)
    got = (
        parsed.malignant,
        parsed.subtype,
        parsed.magnification,
        parsed.patient,
        parsed.patient_number,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("image_001.png", "not a BreakHis file name"),
        ("SOB_B_A-14-22549AB-40.png", "not a BreakHis file name"),
        ("SOB_B_XY-14-22549-40-001.png", "unknown subtype"),
        ("SOB_B_DC-14-22549-40-001.png", "contradicts"),
        ("SOB_M_A-14-22549-40-001.png", "contradicts"),
        ("SOB_B_A-14-22549-50-001.png", "unknown magnification"),
    ],
)
def test_parse_rejects_bad_names_naming_them(name, reason):
    with pytest.raises(DataError, match=reason) as info:
        parse_breakhis_filename(name)
    assert name in str(info.value)
    # skhybrid's own class (one line on the command line), still the ValueError it was
    assert isinstance(info.value, ValueError) and isinstance(info.value, SkhybridError)


# ----------------------------------------------------------------------------- loading


def test_loads_official_tree_with_labels_from_names(tree):
    root, paths = tree
    data = load(root)
    assert data.images.dtype == np.uint8
    assert data.images.shape == (16, *SIZE, 3)
    assert list(data.target_names) == ["benign", "malignant"]
    assert np.bincount(data.target).tolist() == [8, 8]
    names = [Path(f).name for f in data.filenames]
    assert [int("_M_" in n) for n in names] == data.target.tolist()
    assert all(Path(f).is_absolute() and Path(f).is_file() for f in data.filenames)
    assert sorted(names) == sorted(p.name for p in paths)
    # The patient id is exactly the slide folder BreakHis stores the image in.
    assert [Path(f).parents[1].name for f in data.filenames] == data.patient.tolist()
    assert [Path(f).parent.name for f in data.filenames] == data.magnification.tolist()
    assert set(data.subtype) == {Path(f).parents[2].name for f in data.filenames}
    assert data.skipped == [] and data.resized == []


def test_pixels_match_the_files(tree):
    data = load(tree[0])
    for i in (0, 7, 15):
        expected = np.asarray(Image.open(data.filenames[i]).convert("RGB"))
        np.testing.assert_array_equal(data.images[i], expected)


def test_root_may_point_inside_the_tree(tree):
    malignant = tree[0] / "BreaKHis_v1/histology_slides/breast/malignant"
    data = load(malignant)
    assert len(data.target) == 8 and data.target.all()
    slide = next((malignant / "SOB" / "ductal_carcinoma").iterdir())
    assert set(load(slide).patient) == {slide.name}


def test_flat_folder_gives_the_same_metadata(tree, tmp_path):
    make_breakhis_tree(tmp_path, n_per_class=8, image_size=SIZE, layout="flat")
    assert all(p.parent == tmp_path for p in tmp_path.iterdir())
    flat, official = load(tmp_path), load(tree[0])
    by_name = {Path(f).name: i for i, f in enumerate(official.filenames)}
    order = [by_name[Path(f).name] for f in flat.filenames]
    for field in ("target", "subtype", "magnification", "patient", "patient_number"):
        np.testing.assert_array_equal(flat[field], official[field][order])
    np.testing.assert_array_equal(flat.images, official.images[order])


@pytest.mark.parametrize(
    ("magnification", "expected"),
    [
        (40, {"40X"}),
        ("40x", {"40X"}),
        ("200X", {"200X"}),
        ("100", {"100X"}),
        (["100X", 400], {"100X", "400X"}),
        ((40, "40X"), {"40X"}),
        (None, {"40X", "100X", "200X", "400X"}),
    ],
)
def test_magnification_filter(tree, magnification, expected):
    data = load(tree[0], magnification=magnification, load_images=False)
    assert set(data.magnification) == expected
    assert len(data.target) == 16 * len(expected) // 4


@pytest.mark.parametrize("magnification", [50, "40XX", "high", [40, 300], []])
def test_unknown_magnification_lists_valid_values(tree, magnification):
    with pytest.raises(UserError, match=r"40X.*100X.*200X.*400X|empty") as info:
        load(tree[0], magnification=magnification)
    assert isinstance(info.value, ValueError)


def test_subtype_target(tree):
    data = load(tree[0], target="subtype", load_images=False)
    assert len(data.target_names) == 8
    assert list(data.target_names[:4]) == [
        "adenosis",
        "fibroadenoma",
        "phyllodes_tumor",
        "tubular_adenoma",
    ]
    np.testing.assert_array_equal(data.target_names[data.target], data.subtype)
    # The code order is fixed, so benign subtypes are 0-3 whichever files are present.
    is_malignant = np.array(["_M_" in Path(f).name for f in data.filenames])
    np.testing.assert_array_equal(data.target >= 4, is_malignant)


def test_invalid_options_raise(tree):
    for kwargs in (
        {"target": "multiclass"},
        {"on_error": "ignore"},
        {"on_size_mismatch": "crop"},
        {"image_size": (46,)},
    ):
        with pytest.raises(ValueError, match="must be"):
            load(tree[0], **kwargs)


def test_patient_number_groups_slides_of_one_patient(tree):
    data = load(tree[0], load_images=False)
    # The helper writes two slides (..AB, ..CD) per patient number and subtype.
    assert len(set(data.patient)) == 16
    assert len(set(data.patient_number)) == 8
    for number in set(data.patient_number):
        slides = {p for p, n in zip(data.patient, data.patient_number) if n == number}
        assert {s[-2:] for s in slides} == {"AB", "CD"}
    # Patient-wise folds keep every slide on one side.
    folds = GroupKFold(n_splits=4).split(data.filenames, data.target, data.patient_number)
    for train, test in folds:
        assert not set(data.patient_number[train]) & set(data.patient_number[test])


def test_describes_counts_citation_and_split_advice(tree):
    descr = load(tree[0], load_images=False).DESCR
    assert "16 (8 benign, 8 malignant)" in descr
    assert "Spanhol" in descr and "63(7)" in descr
    assert "GroupKFold" in descr


def test_load_images_false_gives_metadata_only(tree_copy):
    # Metadata needs no decoding, so even a broken file is listed.
    broken = next(tree_copy.rglob("*.png"))
    write_truncated_png(broken, np.zeros((*SIZE, 3), np.uint8))
    data = load(tree_copy, load_images=False)
    assert data.images is None
    assert len(data.filenames) == len(data.target) == 16
    assert str(broken.resolve()) in data.filenames


def test_parallel_loading_gives_identical_arrays(tree):
    serial, parallel = load(tree[0], n_jobs=1), load(tree[0], n_jobs=2)
    np.testing.assert_array_equal(serial.images, parallel.images)
    np.testing.assert_array_equal(serial.filenames, parallel.filenames)


def test_progress_bar_follows_verbose(tree, capsys):
    load(tree[0], verbose=False)
    assert "Loading BreakHis" not in capsys.readouterr().err
    load(tree[0], verbose=True)
    assert "Loading BreakHis" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad files


@pytest.fixture
def odd_sized(tree_copy) -> tuple[Path, Path]:
    name = breakhis_name(True, "LC", "777", 40, sequence=1)
    path = breakhis_path(tree_copy, name)
    write_png(path, np.full((SIZE[0] - 4, SIZE[1] + 2, 3), 120, np.uint8))
    return tree_copy, path


def test_odd_sized_image_is_resized_and_recorded(odd_sized):
    root, path = odd_sized
    data = load(root)
    assert data.images.shape == (17, *SIZE, 3)
    i = list(data.filenames).index(str(path.resolve()))
    assert data.target[i] == 1
    assert (data.images[i] == 120).all()
    assert data.resized == [str(path.resolve())]


def test_odd_sized_image_can_be_an_error(odd_sized):
    root, path = odd_sized
    with pytest.raises(DataError, match="expected 46x70") as info:
        load(root, on_size_mismatch="error")
    assert path.name in str(info.value)


def test_image_size_none_takes_the_first_files_size(tree):
    data = load(tree[0], image_size=None)
    assert data.images.shape[1:3] == SIZE


@pytest.fixture
def truncated(tree_copy) -> tuple[Path, Path]:
    # A benign name, so a silently kept broken image would carry a label.
    name = breakhis_name(False, "F", "888", 100, sequence=2)
    path = breakhis_path(tree_copy, name)
    rng = np.random.default_rng(0)
    write_truncated_png(path, rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8))
    return tree_copy, path


def test_truncated_png_raises_naming_it(truncated):
    root, path = truncated
    with pytest.raises(OSError, match="Cannot read image") as info:
        load(root)
    assert path.name in str(info.value)


def test_truncated_png_is_skipped_with_a_warning(truncated, tree):
    root, path = truncated
    with pytest.warns(UserWarning, match=path.name):
        data = load(root, on_error="skip", n_jobs=2)
    assert data.skipped == [str(path.resolve())]
    assert str(path.resolve()) not in data.filenames
    assert data.images.shape == (16, *SIZE, 3)
    # After removing the broken image, every row still matches its file and label.
    reference = load(tree[0])
    np.testing.assert_array_equal(data.images, reference.images)
    np.testing.assert_array_equal(data.target, reference.target)
    assert "Skipped files: 1" in data.DESCR


@pytest.fixture
def badly_named(tree_copy) -> tuple[Path, Path]:
    path = tree_copy / "BreaKHis_v1" / "notes" / "scan_0001.png"
    write_png(path, np.zeros((*SIZE, 3), np.uint8))
    return tree_copy, path


def test_unparsable_name_raises_naming_it(badly_named):
    root, path = badly_named
    with pytest.raises(ValueError, match="not a BreakHis file name") as info:
        load(root)
    assert str(path) in str(info.value)


def test_unparsable_name_is_skipped_with_a_warning(badly_named):
    root, path = badly_named
    with pytest.warns(UserWarning, match="scan_0001.png"):
        data = load(root, on_error="skip")
    assert len(data.target) == 16
    assert data.skipped == [str(path.resolve())]


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(PathNotFoundError, match="no-such-folder") as info:
        load(missing)
    assert isinstance(info.value, FileNotFoundError)


def test_no_images_names_root_and_magnification(tmp_path, tree):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PathNotFoundError, match="empty.*any magnification"):
        load(tmp_path / "empty")
    only_40 = tmp_path / "only40"
    make_breakhis_tree(only_40, n_per_class=2, image_size=SIZE, magnifications=(40,))
    with pytest.raises(FileNotFoundError, match=r"only40.*400X"):
        load(only_40, magnification=400)


def test_all_files_broken_is_an_error(tmp_path):
    name = breakhis_name(False, "A", "1", 40, sequence=1)
    write_truncated_png(breakhis_path(tmp_path, name), np.zeros((*SIZE, 3), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FileNotFoundError, match="No readable"):
            load(tmp_path, on_error="skip")


# ----------------------------------------------------------------------------- real data


def test_real_breakhis_sample(breakhis_sample):
    data = load_breakhis(breakhis_sample, verbose=False, n_jobs=2)
    assert data.images.shape == (23, 460, 700, 3)
    assert np.bincount(data.target).tolist() == [14, 9]
    assert len(set(data.subtype)) == 8
    assert set(data.magnification) == {"40X", "100X", "200X", "400X"}
    assert len(set(data.patient)) == 17
    assert [Path(f).parents[1].name for f in data.filenames] == data.patient.tolist()
    assert {"22549AB", "22549CD"} <= {p.split("-")[-1] for p in data.patient}
    assert len(set(data.patient_number)) < len(set(data.patient))
    assert data.skipped == [] and data.resized == []


def test_skip_reasons_say_why_each_file_was_left_out(truncated, badly_named):
    # Both fixtures share tree_copy: one truncated PNG and one name that does not parse.
    root, bad_png = truncated
    _, bad_name = badly_named
    with pytest.warns(UserWarning):
        data = load(root, on_error="skip")
    assert [e["file"] for e in data.skip_reasons] == data.skipped
    reasons = {Path(e["file"]).name: e["reason"] for e in data.skip_reasons}
    assert set(reasons) == {bad_png.name, bad_name.name}
    # The reason alone, without the path the "file" field already holds.
    assert reasons[bad_name.name].startswith("is not a BreakHis file name")
    assert "truncated" in reasons[bad_png.name] and "Cannot read" not in reasons[bad_png.name]


def test_a_clean_folder_has_no_skip_reasons(tree):
    data = load(tree[0])
    assert data.skipped == [] and data.skip_reasons == []
