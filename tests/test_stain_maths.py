"""One definition of the stain maths: numpy features, torch map and scikit-image agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skhybrid import features, stain_maths
from skhybrid.features import hed_optical_density
from skhybrid.nn import normalize, stain
from skhybrid.nn.stain import hematoxylin_map, luminance_map


def _random_images(seed: int = 0) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, size=(3, 23, 29, 3), dtype=np.uint8)
    # The extremes: black (the 1e-6 floor), white (0) and the unstained-colour clipping.
    images[0, 0, :3] = [(0, 0, 0), (255, 255, 255), (0, 255, 0)]
    return images


def _torch_map(images: np.ndarray) -> np.ndarray:
    """The LSTM's map of uint8 images, through the same uint8 -> [0, 1] step as the models."""
    x = normalize.to_unit_float(torch.from_numpy(images))
    return hematoxylin_map(x)[:, 0].numpy()


def test_numpy_features_and_torch_map_agree_on_random_images():
    images = _random_images()
    np.testing.assert_allclose(
        _torch_map(images), hed_optical_density(images)[..., 0], rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_both_match_scikit_image_rgb2hed(seed):
    skimage_color = pytest.importorskip("skimage.color")
    images = _random_images(seed)
    expected = skimage_color.rgb2hed(images)
    np.testing.assert_allclose(hed_optical_density(images), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(_torch_map(images), expected[..., 0], rtol=0, atol=1e-5)


def test_the_matrices_are_scikit_images():
    colorconv = pytest.importorskip("skimage.color.colorconv")
    np.testing.assert_array_equal(stain_maths.RGB_FROM_HED, colorconv.rgb_from_hed)
    np.testing.assert_allclose(stain_maths.HED_FROM_RGB, colorconv.hed_from_rgb, atol=1e-12)


def test_one_purple_pixel_gives_one_value():
    # Before the stain maths had one home, the features said 0.448 and the LSTM map 1.034.
    pixel = np.array([[[120, 60, 160]]], dtype=np.uint8)
    numpy_value = hed_optical_density(pixel)[0, 0, 0]
    torch_value = _torch_map(pixel[np.newaxis])[0, 0, 0]
    # log(max(I/255, 1e-6)) / log(1e-6) @ inv(rgb_from_hed)[:, 0], worked out in float64.
    od = np.log(np.array([120, 60, 160]) / 255) / np.log(1e-6)
    expected = od @ np.linalg.inv(stain_maths.RGB_FROM_HED)[:, 0]
    assert expected == pytest.approx(0.0752534, abs=1e-6)
    assert numpy_value == pytest.approx(expected, abs=1e-6)
    assert torch_value == pytest.approx(expected, abs=1e-6)


def test_optical_density_is_zero_for_white_and_one_for_black():
    table = stain_maths.uint8_optical_density_table()
    assert table[255] == 0.0 and table[0] == pytest.approx(1.0)
    assert np.all(np.diff(table) < 0)  # darker pixel, more stain
    concentrations = stain_maths.hed_from_optical_density(np.array([[0.2, 0.05, 0.6]]))
    assert concentrations.min() == 0.0  # negative (unexplained) concentrations are clipped


def test_constants_are_the_single_shared_objects():
    assert features.RGB_FROM_HED is stain_maths.RGB_FROM_HED
    assert features.LUMA is stain_maths.LUMA
    assert normalize.IMAGENET_MEAN is stain_maths.IMAGENET_MEAN
    assert normalize.IMAGENET_STD is stain_maths.IMAGENET_STD
    # torch copies the numpy constants once; the values are the shared ones.
    np.testing.assert_array_equal(stain._LUMA.double().numpy(), np.float32(stain_maths.LUMA))
    for constant in (stain_maths.RGB_FROM_HED, stain_maths.HED_FROM_RGB, stain_maths.LUMA):
        with pytest.raises(ValueError, match="read-only"):
            constant[0] = 0.0


def test_the_luminance_map_uses_the_shared_luma():
    x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)  # pure red: Y is the red weight
    assert luminance_map(x).item() == pytest.approx(1 - stain_maths.LUMA[0])


def test_the_lstm_reads_hematoxylin_in_natural_optical_density_units():
    from skhybrid.nn.stain import LSTM_MAP_SCALE, one_channel_map

    x = torch.rand(2, 3, 8, 8)
    h = hematoxylin_map(x)
    torch.testing.assert_close(one_channel_map(x, "hematoxylin"), h * -np.log(1e-6))
    torch.testing.assert_close(one_channel_map(x, "luminance"), luminance_map(x))
    assert LSTM_MAP_SCALE["hematoxylin"] == pytest.approx(13.8155, abs=1e-4)
