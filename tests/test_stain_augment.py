"""random_stain_jitter: seeded, per-sample, identity at zero, on the right device and dtype,
and it changes the stain amounts by the documented ranges without wrecking the colours."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skhybrid.datasets import make_histology
from skhybrid.nn.stain_augment import _HED_FROM_RGB, random_stain_jitter


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    images = make_histology(8, image_size=(64, 64), grid=(1, 1), random_state=0).images
    return torch.from_numpy(images)


def _concentrations(images: torch.Tensor) -> torch.Tensor:
    """Per-image mean H, E, residual concentrations ``(B, 3)`` (same OD as the module)."""
    od = math.log(256.0) - torch.log1p(images.to(torch.float64))
    return (od.reshape(len(images), -1, 3) @ _HED_FROM_RGB).mean(dim=1)


def test_same_seed_same_output_and_different_seeds_differ(tiles):
    first = random_stain_jitter(tiles, generator=torch.Generator().manual_seed(3))
    again = random_stain_jitter(tiles, generator=torch.Generator().manual_seed(3))
    other = random_stain_jitter(tiles, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    torch.manual_seed(5)
    global_first = random_stain_jitter(tiles)
    torch.manual_seed(5)
    assert torch.equal(global_first, random_stain_jitter(tiles))


def test_each_sample_gets_its_own_jitter(tiles):
    copies = tiles[:1].repeat(6, 1, 1, 1)
    out = random_stain_jitter(copies, generator=torch.Generator().manual_seed(0))
    for i in range(1, len(out)):
        assert not torch.equal(out[0], out[i])


def test_zero_jitter_is_the_identity(tiles):
    out = random_stain_jitter(tiles, sigma_scale=0.0, sigma_shift=0.0)
    assert (out.int() - tiles.int()).abs().max() <= 1
    as_float = tiles.float() / 255
    out_float = random_stain_jitter(as_float, sigma_scale=0.0, sigma_shift=0.0)
    assert (out_float - as_float).abs().max() < 1e-4


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_dtype_shape_and_range_are_kept(tiles, dtype):
    images = tiles if dtype == torch.uint8 else tiles.to(dtype) / 255
    out = random_stain_jitter(images, sigma_scale=0.3, sigma_shift=0.3)
    assert out.dtype == dtype and out.shape == images.shape and out.device == images.device
    if dtype != torch.uint8:
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert out.data_ptr() != images.data_ptr()  # a new tensor; the input is untouched


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_images_device_with_the_cpu_generator(tiles):
    generator = torch.Generator().manual_seed(1)
    on_gpu = random_stain_jitter(tiles.cuda(), generator=generator)
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.uint8
    on_cpu = random_stain_jitter(tiles, generator=torch.Generator().manual_seed(1))
    assert (on_gpu.cpu().int() - on_cpu.int()).abs().max() <= 1  # float rounding only


def test_stain_amounts_spread_as_documented(tiles):
    # 400 jittered copies of one tile: the spread of the mean H (and E) concentration across
    # copies is that of c * a + t, a ~ U(1 +- s), t ~ U(+- s): sd = s / sqrt(3) * sqrt(c^2 + 1).
    copies = tiles[:1].repeat(400, 1, 1, 1)
    sigma = 0.05
    out = random_stain_jitter(copies, sigma, sigma, generator=torch.Generator().manual_seed(0))
    before = _concentrations(tiles[:1])[0]
    after = _concentrations(out)
    expected = sigma / math.sqrt(3) * torch.sqrt(before[:2] ** 2 + 1)
    spread = after[:, :2].std(dim=0)
    assert torch.all(spread > 0.7 * expected) and torch.all(spread < 1.2 * expected)
    # The residual channel is not jittered: its spread stays near 0 (uint8 rounding only).
    assert after[:, 2].std() < 0.1 * expected.min()
    # Independent draws for H and E: their jitters are not perfectly correlated.
    correlation = np.corrcoef(after[:, 0].numpy(), after[:, 1].numpy())[0, 1]
    assert abs(correlation) < 0.9


def test_default_ranges_keep_the_colours_plausible():
    images = torch.from_numpy(make_histology(16, image_size=(96, 96), random_state=1).images)
    out = random_stain_jitter(images, generator=torch.Generator().manual_seed(0))
    saturated = (out == 0) | (out == 255)
    newly_saturated = saturated & ~((images == 0) | (images == 255))
    assert newly_saturated.float().mean() < 0.01
    mean_shift = (out.float().mean(dim=(1, 2)) - images.float().mean(dim=(1, 2))).abs()
    assert mean_shift.max() < 15  # grey levels per channel: a tint, not a new palette
    assert (out.int() - images.int()).abs().float().mean() > 0.5  # but something changed


def test_bad_input_is_rejected(tiles):
    with pytest.raises(ValueError, match="shape"):
        random_stain_jitter(tiles[0])
    with pytest.raises(ValueError, match=">= 0"):
        random_stain_jitter(tiles, sigma_scale=-0.1)
    with pytest.raises(TypeError, match="uint8 or floating"):
        random_stain_jitter(tiles.to(torch.int32))
