"""Tests of SubImageTiler and the bag/tile helpers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from skhybrid.tiling import (
    SubImageTiler,
    broadcast_bag_labels,
    flatten_bags,
    tile_boxes,
    tile_edges,
    tile_image_array,
    unflatten_tiles,
)


def _images(n: int = 3, height: int = 46, width: int = 70, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_tiles_are_row_major_blocks_of_the_image():
    images = _images(2, 46, 70)
    bags = SubImageTiler(grid=(3, 3)).fit_transform(images)
    assert bags.shape == (2, 9, 15, 23, 3)
    assert bags.dtype == np.uint8
    # 46 = 3*15 + 1 -> top offset 0; 70 = 3*23 + 1 -> left offset 0 (1 extra pixel, trimmed at end).
    for row in range(3):
        for col in range(3):
            expected = images[1, row * 15 : (row + 1) * 15, col * 23 : (col + 1) * 23]
            np.testing.assert_array_equal(bags[1, row * 3 + col], expected)


def test_remainder_is_trimmed_evenly_from_both_sides():
    images = _images(1, 32, 33)  # 32 = 3*10 + 2 -> one row off the top and one off the bottom
    bags = SubImageTiler(grid=(3, 3)).fit_transform(images)
    np.testing.assert_array_equal(bags[0, 0], images[0, 1:11, 0:11])
    np.testing.assert_array_equal(bags[0, 8], images[0, 21:31, 22:33])


def test_breakhis_geometry_matches_the_paper():
    tiler = SubImageTiler(grid=(3, 3)).fit(np.zeros((1, 460, 700, 3), np.uint8))
    assert tiler.tile_shape_ == (153, 233)
    assert tiler.n_tiles_ == 9
    # BreakHis 40X: 1995 images -> 17955 sub-images (the paper's Table 4 total).
    assert 1995 * tiler.n_tiles_ == 17955


def test_remainder_error_and_resize():
    images = _images(2, 34, 33)
    with pytest.raises(ValueError, match="not divisible"):
        SubImageTiler(remainder="error").fit(images)
    bags = SubImageTiler(remainder="resize").fit_transform(images)
    # The whole image is resized to 33x33 (nearest multiple of 3 below 34x33): no tissue lost.
    assert bags.shape == (2, 9, 11, 11, 3)
    exact = _images(1, 33, 33)
    np.testing.assert_array_equal(
        SubImageTiler(remainder="resize").fit_transform(exact),
        SubImageTiler(remainder="crop").fit_transform(exact),
    )


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_tile_size_resizes_each_tile(interpolation):
    images = np.zeros((2, 60, 90, 3), np.uint8)
    images[:, :20, :30] = 200  # only the top-left tile is bright
    bags = SubImageTiler(tile_size=(16, 24), interpolation=interpolation).fit_transform(images)
    assert bags.shape == (2, 9, 16, 24, 3)
    assert bags.dtype == np.uint8
    assert np.all(bags[:, 0] == 200)
    assert np.all(bags[:, 1:] == 0)


def test_resize_matches_pillow_closely():
    images = _images(1, 90, 90, seed=3)
    bags = SubImageTiler(tile_size=(64, 64)).fit_transform(images)
    reference = np.asarray(Image.fromarray(images[0, :30, :30]).resize((64, 64), Image.BILINEAR))
    diff = np.abs(bags[0, 0].astype(int) - reference.astype(int))
    assert diff.mean() < 6  # different kernels' rounding, same picture


def test_list_inputs_arrays_pil_and_paths(tmp_path):
    images = _images(3, 30, 45)
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    expected = SubImageTiler().fit_transform(images)
    as_list = [images[0], Image.fromarray(images[1]), str(paths[2])]
    np.testing.assert_array_equal(SubImageTiler().fit_transform(as_list), expected)
    np.testing.assert_array_equal(SubImageTiler(batch_size=2).fit_transform(paths), expected)


def test_rgba_and_grayscale_files_are_converted(tmp_path):
    rgba = np.dstack([_images(1, 30, 30)[0], np.full((30, 30), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgba[..., 0], "L").save(tmp_path / "g.png")
    bags = SubImageTiler().fit_transform([tmp_path / "a.png", tmp_path / "g.png"])
    np.testing.assert_array_equal(bags[0, 0], rgba[:10, :10, :3])
    assert np.all(bags[1, ..., 0] == bags[1, ..., 2])


def test_mixed_sizes_need_tile_size():
    mixed = [_images(1, 30, 30)[0], _images(1, 60, 90)[0]]
    with pytest.raises(ValueError, match="tile_size"):
        SubImageTiler().fit(mixed)
    tiler = SubImageTiler(tile_size=(8, 8)).fit(mixed)
    assert tiler.image_shape_ is None
    assert tiler.transform(mixed).shape == (2, 9, 8, 8, 3)


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        (np.zeros((2, 30, 30, 3), np.float32), TypeError, r"uint8.*\(X \* 255\)"),
        (np.zeros((2, 30, 30, 4), np.uint8), ValueError, "RGBA"),
        (np.zeros((2, 30, 30, 1), np.uint8), ValueError, "grayscale"),
        (np.zeros((30, 30, 3), np.uint8), ValueError, "single image"),
        (np.zeros((2, 30, 30), np.uint8), ValueError, "Grayscale"),
        (np.zeros((0, 30, 30, 3), np.uint8), ValueError, "empty"),
        ([], ValueError, "empty"),
        (np.zeros((2, 2, 30, 3), np.uint8), ValueError, "larger than the image"),
        ("image.png", TypeError, "list of images"),
    ],
)
def test_bad_input_gives_clear_errors(X, error, message):
    with pytest.raises(error, match=message):
        SubImageTiler().fit(X)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"grid": (0, 3)}, "grid"),
        ({"grid": 3}, "grid"),
        ({"tile_size": (32,)}, "tile_size"),
        ({"remainder": "pad"}, "remainder"),
        ({"interpolation": "lanczos"}, "interpolation"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_parameters_are_rejected_in_fit(params, message):
    tiler = SubImageTiler(**params)  # __init__ accepts anything, as sklearn requires
    with pytest.raises(ValueError, match=message):
        tiler.fit(_images(1))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        SubImageTiler().fit([tmp_path / "nope.png"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    with pytest.raises(ValueError, match="bad.png"):
        SubImageTiler().fit_transform([bad])


def test_truncated_file_fails_in_transform_with_its_path(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(_images(1, 60, 60)[0]).save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    tiler = SubImageTiler().fit([good])
    with pytest.raises(ValueError, match="truncated.png"):
        tiler.transform([good, truncated])


def test_inputs_are_not_modified_and_output_is_a_copy():
    images = _images(2)
    before = images.copy()
    bags = SubImageTiler().fit_transform(images)
    bags[...] = 0
    np.testing.assert_array_equal(images, before)
    assert not np.shares_memory(bags, images)


def test_transform_before_fit_raises():
    with pytest.raises(NotFittedError):
        SubImageTiler().transform(_images(1))


def test_inverse_transform_stitches_tiles_back():
    images = _images(2, 30, 45)
    tiler = SubImageTiler().fit(images)
    np.testing.assert_array_equal(tiler.inverse_transform(tiler.transform(images)), images)
    with pytest.raises(ValueError, match="9"):
        tiler.inverse_transform(np.zeros((1, 4, 5, 5, 3), np.uint8))


def test_pipeline_clone_and_pickle():
    images = _images(2)
    pipe = Pipeline([("tiles", SubImageTiler(tile_size=(8, 8)))])
    expected = pipe.fit_transform(images)
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.transform(images), expected)
    cloned = clone(pipe)
    assert cloned.get_params()["tiles__tile_size"] == (8, 8)
    assert not hasattr(cloned.named_steps["tiles"], "n_tiles_")


@pytest.mark.parametrize(
    "check",
    [
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_get_params_invariance,
        check_set_params,
    ],
)
def test_applicable_sklearn_checks(check):
    """The parameter checks apply; the data checks of ``check_estimator`` do not.

    ``check_estimator`` feeds 2-D float tables (``check_transformer_general``,
    ``check_fit2d_*``, ``check_dtype_object``, ``check_estimators_nan_inf``, ...); the tiler takes
    4-D uint8 images and rejects floats on purpose, so those checks cannot apply.
    """
    check("SubImageTiler", SubImageTiler())


# -- bag helpers ------------------------------------------------------------------------------
def test_flatten_bags_with_image_and_tile_labels():
    bags = np.arange(2 * 3 * 2).reshape(2, 3, 2)
    tiles, tile_y, groups = flatten_bags(bags, y=np.array(["b", "m"]))
    np.testing.assert_array_equal(tiles, bags.reshape(6, 2))
    np.testing.assert_array_equal(tile_y, ["b", "b", "b", "m", "m", "m"])
    np.testing.assert_array_equal(groups, [0, 0, 0, 1, 1, 1])
    _, tile_y, _ = flatten_bags(bags, y=[[0, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(tile_y, [0, 1, 0, 1, 1, 0])
    assert flatten_bags(bags)[1] is None


def test_label_shape_errors():
    with pytest.raises(ValueError, match=r"\(2,\).*\(2, 3\)"):
        broadcast_bag_labels([0, 1, 1], 2, 3)
    with pytest.raises(ValueError, match="cannot be split"):
        unflatten_tiles(np.zeros(7), 3)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 4),
    rows=st.integers(1, 4),
    cols=st.integers(1, 4),
    extra_h=st.integers(0, 3),
    extra_w=st.integers(0, 3),
    tile=st.integers(1, 5),
)
def test_property_tiling_round_trip(n, rows, cols, extra_h, extra_w, tile):
    height, width = rows * tile + extra_h, cols * tile + extra_w
    images = np.random.default_rng(n).integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    tiler = SubImageTiler(grid=(rows, cols))
    bags = tiler.fit_transform(images)
    assert bags.shape == (n, rows * cols, height // rows, width // cols, 3)
    assert bags.dtype == np.uint8
    mosaic = tiler.inverse_transform(bags)
    top, left = (height - mosaic.shape[1]) // 2, (width - mosaic.shape[2]) // 2
    np.testing.assert_array_equal(
        mosaic, images[:, top : top + mosaic.shape[1], left : left + mosaic.shape[2]]
    )
    np.testing.assert_array_equal(tile_image_array(images, (rows, cols)), bags)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 5),
    n_tiles=st.integers(1, 9),
    trailing=st.lists(st.integers(1, 3), max_size=3),
)
def test_property_flatten_unflatten_round_trip(n, n_tiles, trailing):
    bags = np.random.default_rng(0).random((n, n_tiles, *trailing))
    tiles, _, groups = flatten_bags(bags)
    assert tiles.shape == (n * n_tiles, *trailing)
    np.testing.assert_array_equal(unflatten_tiles(tiles, n_tiles), bags)
    np.testing.assert_array_equal(np.bincount(groups), np.full(n, n_tiles))
    # Tiles of one image are contiguous: groups never decrease.
    assert np.all(np.diff(groups) >= 0)


# -- the fast resize path ------------------------------------------------------------------------
def _reference_bags(images: np.ndarray, tile_size, interpolation: str, antialias: bool):
    """The straightforward path: tile every image, then one ``F.interpolate`` over all tiles."""
    from skhybrid.tiling import _resize_reference

    bags = tile_image_array(images, (3, 3))
    n, n_tiles, h, w, c = bags.shape
    resized = _resize_reference(bags.reshape(-1, h, w, c), tile_size, interpolation, antialias)
    return resized.reshape(n, n_tiles, *tile_size, c)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("antialias", [True, False])
def test_fast_resize_is_identical_to_the_reference_path(monkeypatch, interpolation, antialias):
    # Tolerance: none. The fast path calls the same torch kernels with `out=` into the output
    # array and in cache-sized chunks; a tiny chunk size makes several chunks per batch.
    import skhybrid.tiling as tiling

    monkeypatch.setattr(tiling, "_RESIZE_CHUNK_BYTES", 1)
    images = _images(5, 46, 70, seed=7)
    for tile_size in [(24, 16), (9, 30)]:  # up- and downscaling in each axis
        tiler = SubImageTiler(
            tile_size=tile_size, interpolation=interpolation, antialias=antialias, batch_size=3
        )
        np.testing.assert_array_equal(
            tiler.fit_transform(images),
            _reference_bags(images, tile_size, interpolation, antialias),
        )


def test_resize_without_out_kernel_falls_back_to_interpolate(monkeypatch):
    import skhybrid.tiling as tiling

    images = _images(2, 46, 70, seed=8)
    expected = SubImageTiler(tile_size=(20, 20)).fit_transform(images)
    monkeypatch.setattr(tiling, "_resize_op", lambda *args: None)
    np.testing.assert_array_equal(SubImageTiler(tile_size=(20, 20)).fit_transform(images), expected)


def test_breakhis_tiles_match_a_naive_pillow_loop():
    # The paper's geometry (700x460 -> 9 tiles of 224x224): torch's antialiased uint8 bilinear
    # kernel is Pillow's algorithm, so the tiles match a plain crop + resize loop to within one
    # grey level (rounding), even on white noise, the worst case.
    image = _images(1, 460, 700, seed=9)
    bags = SubImageTiler(tile_size=(224, 224)).fit_transform(image)
    pil = Image.fromarray(image[0])
    reference = np.stack(
        [
            np.asarray(
                pil.crop((c * 233, r * 153, (c + 1) * 233, (r + 1) * 153)).resize(
                    (224, 224), Image.BILINEAR
                )
            )
            for r in range(3)
            for c in range(3)
        ]
    )
    diff = np.abs(bags[0].astype(int) - reference.astype(int))
    assert diff.max() <= 1
    assert diff.mean() < 0.05


# -- the one tile geometry ----------------------------------------------------------------------
def _old_crop_edges(length: int, parts: int) -> list[int]:
    """The crop geometry as tiling._grid_geometry, overlay.py and the synthetic renderer each
    computed it before they shared tile_edges (commit cb38bd0)."""
    size = length // parts
    start = (length - parts * size) // 2
    return [start + k * size for k in range(parts + 1)]


def _old_overlay_resize_edges(length: int, parts: int) -> list[int]:
    """overlay.py's grid for remainder="resize" before it used tile_edges."""
    return [round(k * length / parts) for k in range(parts + 1)]


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 800),
    width=st.integers(1, 800),
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
)
def test_tile_edges_are_the_geometry_every_copy_used_to_compute(height, width, rows, cols):
    if rows > height or cols > width:
        with pytest.raises(ValueError, match="larger than the image"):
            tile_edges(height, width, (rows, cols))
        return
    row_edges, col_edges = tile_edges(height, width, (rows, cols))
    assert row_edges.tolist() == _old_crop_edges(height, rows)
    assert col_edges.tolist() == _old_crop_edges(width, cols)
    row_edges, col_edges = tile_edges(height, width, (rows, cols), remainder="resize")
    assert row_edges.tolist() == _old_overlay_resize_edges(height, rows)
    assert col_edges.tolist() == _old_overlay_resize_edges(width, cols)
    assert row_edges[0] == 0 and row_edges[-1] == height  # "resize" keeps every pixel


@pytest.mark.parametrize(
    ("height", "width", "grid"),
    [(46, 70, (3, 3)), (32, 33, (3, 3)), (61, 83, (2, 4)), (9, 9, (3, 3))],
)
def test_tile_boxes_are_exactly_the_tiles_the_tiler_cuts(height, width, grid):
    images = _images(2, height, width, seed=3)
    bags = SubImageTiler(grid=grid).fit_transform(images)
    boxes = tile_boxes(height, width, grid)
    assert boxes.shape == (grid[0] * grid[1], 4)
    for tile, (top, left, bottom, right) in enumerate(boxes):
        np.testing.assert_array_equal(bags[:, tile], images[:, top:bottom, left:right])


def test_tile_edges_reject_what_the_tiler_rejects():
    with pytest.raises(ValueError, match="not divisible"):
        tile_edges(46, 70, (3, 3), remainder="error")
    assert [e.tolist() for e in tile_edges(45, 69, (3, 3), remainder="error")] == [
        [0, 15, 30, 45],
        [0, 23, 46, 69],
    ]
    with pytest.raises(ValueError, match="remainder"):
        tile_edges(46, 70, (3, 3), remainder="pad")
    with pytest.raises(ValueError, match="grid"):
        tile_edges(46, 70, (True, 3))


@pytest.mark.parametrize(
    "params",
    [{"grid": (True, 3)}, {"grid": (3, False)}, {"tile_size": (True, 8)}, {"grid": (3.0, 3)}],
)
def test_bool_and_float_pairs_are_rejected(params):
    with pytest.raises(ValueError, match="pair of positive integers"):
        SubImageTiler(**params).fit(_images(1))


@pytest.mark.parametrize(
    ("params", "message"),
    [({"antialias": "yes"}, "antialias"), ({"batch_size": 2.5}, "batch_size")],
)
def test_parameter_constraints_check_every_parameter(params, message):
    with pytest.raises(ValueError, match=message):
        SubImageTiler(**params).fit(_images(1))
