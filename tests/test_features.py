"""Tests of ColorTextureFeatures: shapes, names, stain separation, chunking, sklearn API."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_estimator_tags_renamed,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
    check_valid_tag_types,
)
from threadpoolctl import threadpool_limits

from skhybrid.features import RGB_FROM_HED, ColorTextureFeatures, hed_optical_density


@pytest.fixture(scope="module", autouse=True)
def _single_blas_thread():
    """Tiny linear models run ~10x slower with several BLAS threads on a busy 2-core machine."""
    with threadpool_limits(limits=1):
        yield


N_FEATURES_DEFAULT = 22  # 6 colour + 4 stain + 2 dark + 2 gradient + 8 histogram


def _noise_tiles(rng: np.random.Generator, n: int, colour: tuple[int, int, int], spread: int):
    """Tiles of one colour plus uniform noise, shape (n, 24, 32, 3) uint8."""
    noise = rng.integers(-spread, spread + 1, size=(n, 24, 32, 3))
    return np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)


def _nuclei_tiles(rng: np.random.Generator, n: int, n_nuclei: int) -> np.ndarray:
    """Pale pink stroma with ``n_nuclei`` dark-purple 4x4 nuclei per tile."""
    tiles = _noise_tiles(rng, n, (235, 190, 215), 12)
    for tile in tiles:
        for _ in range(n_nuclei):
            top, left = rng.integers(0, 20), rng.integers(0, 28)
            tile[top : top + 4, left : left + 4] = (70, 40, 120)
    return tiles


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([_nuclei_tiles(rng, 20, 2), _nuclei_tiles(rng, 20, 25)])


def test_shapes_dtype_and_names(tiles):
    transformer = ColorTextureFeatures().fit(tiles)
    features = transformer.transform(tiles)
    assert features.shape == (40, N_FEATURES_DEFAULT)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    names = transformer.get_feature_names_out()
    assert len(names) == features.shape[1] == transformer.n_features_out_
    assert len(set(names)) == len(names)
    assert {"hematoxylin_mean", "eosin_mean", "dark_fraction_0.35", "gradient_energy"} <= set(names)


def test_bags_give_per_tile_features(tiles):
    bags = tiles.reshape(4, 10, *tiles.shape[1:])
    transformer = ColorTextureFeatures().fit(bags)
    bag_features = transformer.transform(bags)
    assert bag_features.shape == (4, 10, N_FEATURES_DEFAULT)
    np.testing.assert_array_equal(bag_features.reshape(40, -1), transformer.transform(tiles))


@pytest.mark.parametrize(
    ("params", "n_features"),
    [({"n_bins": 0}, 14), ({"n_bins": 4, "dark_thresholds": (0.5,)}, 17)],
)
def test_parameters_change_the_feature_count(tiles, params, n_features):
    transformer = ColorTextureFeatures(**params).fit(tiles)
    assert transformer.transform(tiles).shape == (40, n_features)
    assert len(transformer.get_feature_names_out()) == n_features


def test_known_values_on_flat_colours():
    white = np.full((1, 8, 8, 3), 255, dtype=np.uint8)
    black = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    transformer = ColorTextureFeatures().fit(white)
    names = list(transformer.get_feature_names_out())
    white_f, black_f = transformer.transform(white)[0], transformer.transform(black)[0]
    assert white_f[names.index("rgb_mean_r")] == pytest.approx(1.0)
    assert white_f[names.index("hematoxylin_mean")] == pytest.approx(0.0, abs=1e-6)
    assert white_f[names.index("rgb_std_g")] == pytest.approx(0.0, abs=1e-6)
    assert white_f[names.index("gradient_energy")] == 0.0
    assert white_f[names.index("hist_7")] == 1.0
    assert black_f[names.index("dark_fraction_0.35")] == 1.0
    assert black_f[names.index("hist_0")] == 1.0


def test_colour_deconvolution_recovers_pure_stains():
    # A pixel coloured by one stain alone must decompose into that stain only.
    # OD = log(I / 255) / log(1e-6) = c * vector, so I = 255 * 1e-6 ** (c * vector).
    for stain, vector in enumerate(RGB_FROM_HED[:2]):
        od = 0.1 * vector
        pixel = np.round(255 * 1e-6**od).astype(np.uint8)
        concentrations = hed_optical_density(pixel[np.newaxis])[0]
        assert concentrations[stain] == pytest.approx(0.1, abs=0.003)
        assert abs(concentrations[1 - stain]) < 0.003


def test_separates_dark_nuclei_from_pale_tiles(tiles):
    target = np.repeat([0, 1], 20)
    transformer = ColorTextureFeatures().fit(tiles)
    features = transformer.transform(tiles)
    names = list(transformer.get_feature_names_out())
    for name in ("hematoxylin_mean", "dark_fraction_0.55", "gradient_energy"):
        column = features[:, names.index(name)]
        # Every nuclear-dense tile exceeds every sparse one.
        assert column[target == 1].min() > column[target == 0].max(), name
    assert (
        features[target == 1, names.index("rgb_mean_g")].max()
        < features[target == 0, names.index("rgb_mean_g")].min()
    )
    model = make_pipeline(ColorTextureFeatures(), StandardScaler(), LogisticRegression())
    assert cross_val_score(model, tiles, target, cv=4).mean() == 1.0


def test_chunking_does_not_change_results(tiles):
    one_chunk = ColorTextureFeatures(chunk_size=len(tiles)).fit_transform(tiles)
    for chunk_size in (1, 7, 64):
        chunked = ColorTextureFeatures(chunk_size=chunk_size).fit_transform(tiles)
        np.testing.assert_array_equal(chunked, one_chunk)


def test_memory_is_bounded_by_chunk_size(monkeypatch, tiles):
    import skhybrid.features as features_module

    seen: list[int] = []
    original = features_module._chunk_features

    def spy(chunk, *args):
        seen.append(len(chunk))
        return original(chunk, *args)

    monkeypatch.setattr(features_module, "_chunk_features", spy)
    ColorTextureFeatures(chunk_size=16).fit_transform(tiles)
    assert seen == [16, 16, 8]


def test_does_not_modify_input_and_is_idempotent(tiles):
    copy = tiles.copy()
    readonly = tiles.copy()
    readonly.flags.writeable = False
    transformer = ColorTextureFeatures().fit(readonly)
    first = transformer.transform(readonly)
    np.testing.assert_array_equal(tiles, copy)
    np.testing.assert_array_equal(first, transformer.fit(tiles).transform(tiles))
    np.testing.assert_array_equal(first, ColorTextureFeatures().fit_transform(tiles))


def test_any_tile_size_and_pickle(tiles):
    transformer = ColorTextureFeatures().fit(tiles)
    big = np.repeat(np.repeat(tiles[:3], 3, axis=1), 3, axis=2)  # same content, 3x larger
    np.testing.assert_allclose(
        transformer.transform(big)[:, :12], transformer.transform(tiles[:3])[:, :12], atol=0.02
    )
    restored = pickle.loads(pickle.dumps(transformer))
    np.testing.assert_array_equal(restored.transform(tiles), transformer.transform(tiles))


def test_not_fitted_and_invalid_input(tiles):
    with pytest.raises(NotFittedError):
        ColorTextureFeatures().transform(tiles)
    with pytest.raises(TypeError, match="uint8"):
        ColorTextureFeatures().fit(tiles.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        ColorTextureFeatures().fit(tiles[0])


@pytest.mark.parametrize(
    "params",
    [{"n_bins": -1}, {"chunk_size": 0}, {"dark_thresholds": (1.5,)}, {"dark_thresholds": 0.5}],
)
def test_invalid_parameters_fail_in_fit(tiles, params):
    transformer = ColorTextureFeatures(**params)  # __init__ only stores
    with pytest.raises(ValueError):
        transformer.fit(tiles)


@pytest.mark.parametrize(
    "check",
    [
        check_parameters_default_constructible,
        check_no_attributes_set_in_init,
        check_get_params_invariance,
        check_set_params,
        check_estimator_repr,
        check_estimator_cloneable,
        check_estimator_tags_renamed,
        check_valid_tag_types,
        check_mixin_order,
        check_do_not_raise_errors_in_init_or_set_params,
    ],
)
def test_sklearn_checks_that_apply(check):
    """scikit-learn's estimator checks that do not need 2-D numeric data.

    The others feed random 2-D float arrays (negative values, NaN, sparse matrices,
    pandas frames), which are not images: ColorTextureFeatures takes uint8 RGB tiles
    ``(n, h, w, 3)``, so ``check_transformer_general``, ``check_fit2d_*``,
    ``check_estimators_dtypes``, ``check_estimators_nan_inf``, the sparse and pandas checks,
    ``check_n_features_in*``, ``check_transformer_preserve_dtypes`` and the like do not apply.
    An adapter from 2-D floats to images would test the adapter, not the transformer. Their
    image equivalents are tested above: fit idempotence and ``fit_transform`` consistency,
    unchanged and read-only input, pickling, ``NotFittedError``, feature names, validation
    of parameters in ``fit``.
    """
    estimator = ColorTextureFeatures()
    check(type(estimator).__name__, clone(estimator))
