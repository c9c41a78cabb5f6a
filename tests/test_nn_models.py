"""The PyTorch modules: input handling, stain maps, fusion, freezing, augmentation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skhybrid.nn import (
    CNN,
    FUSIONS,
    AttentionFusion,
    HybridCNNLSTM,
    ImageNormalizer,
    build_fusion,
    hematoxylin_map,
    luminance_map,
    to_unit_float,
)
from skhybrid.nn.augment import random_dihedral
from skhybrid.nn.normalize import IMAGENET_MEAN, IMAGENET_STD


def _batch(n=4, h=32, w=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=generator)


def test_to_unit_float_is_nchw_channels_last_in_unit_range():
    images = _batch()
    x = to_unit_float(images)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(x[1, 2, 5, 7], images[1, 5, 7, 2].float() / 255)


def test_normalizer_standardises_each_channel_and_keeps_the_layout():
    x = to_unit_float(_batch())
    out = ImageNormalizer()(x)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(out, (x - mean) / std, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last)
    # the ImageNet mean maps to zero in every channel
    zero = ImageNormalizer()(mean.expand(1, 3, 2, 2))
    assert torch.allclose(zero, torch.zeros(1, 3, 2, 2), atol=1e-6)
    assert set(ImageNormalizer().state_dict()) == set()  # constants, not saved with models


def test_models_reject_float_batches_with_a_hint():
    with pytest.raises(TypeError, match="uint8"):
        to_unit_float(torch.rand(2, 8, 8, 3))


def test_hematoxylin_map_is_zero_on_white_and_high_on_purple_nuclei():
    white = torch.ones(1, 3, 1, 1)
    purple = torch.tensor([90, 50, 140]).view(1, 3, 1, 1) / 255  # hematoxylin-stained nucleus
    pink = torch.tensor([235, 160, 200]).view(1, 3, 1, 1) / 255  # eosin-stained stroma
    assert hematoxylin_map(white).item() == pytest.approx(0.0, abs=1e-3)
    assert hematoxylin_map(purple).item() > 3 * hematoxylin_map(pink).item()
    assert luminance_map(white).item() == pytest.approx(0.0, abs=1e-6)
    assert luminance_map(purple).item() > luminance_map(pink).item()


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("rnn_input", ["image", "cnn_map"])
def test_hybrid_gives_logits_for_every_fusion_and_rnn_input(fusion, rnn_input):
    model = HybridCNNLSTM(
        "resnet18", 3, (32, 32), lstm_hidden_size=16, fusion=fusion, rnn_input=rnn_input
    )
    logits = model.eval()(_batch())
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    expected_input = 32 if rnn_input == "image" else 512
    assert model.lstm.input_size == expected_input and model.lstm.hidden_size == 16


def test_attention_weights_over_the_branches_sum_to_one_per_feature():
    fusion = AttentionFusion(5)
    u_c, u_r = torch.randn(3, 5), torch.randn(3, 5)
    z = fusion(u_c, u_r)
    alpha = fusion.last_weights
    assert alpha.shape == (3, 2, 5)
    assert torch.allclose(alpha.sum(dim=1), torch.ones(3, 5))
    assert torch.allclose(z, alpha[:, 0] * u_c + alpha[:, 1] * u_r)
    assert build_fusion("concat", 5).out_features == 10
    with pytest.raises(ValueError, match="valid fusions"):
        build_fusion("gated", 5)


def test_rnn_map_size_pools_the_map_so_any_tile_size_works():
    model = HybridCNNLSTM("resnet18", 2, (32, 32), lstm_hidden_size=8, rnn_map_size=8).eval()
    assert model.lstm.input_size == 8
    assert model(_batch(h=48, w=40)).shape == (4, 2)
    strict = HybridCNNLSTM("resnet18", 2, (32, 32), lstm_hidden_size=8).eval()
    with pytest.raises(ValueError, match="rows of 32 pixels"):
        strict(_batch(w=40))


def _batchnorms(model):
    return [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("model_cls", [CNN, HybridCNNLSTM])
def test_frozen_backbone_keeps_weights_and_batchnorm_statistics(model_cls):
    model = model_cls("resnet18", 2, tile_shape=(32, 32))
    model.freeze_backbone(True)
    model.train()  # skorch calls train() before every step; BN must stay in eval
    assert not model.backbone.training and all(not m.training for m in _batchnorms(model))
    assert model.fc.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = model(_batch()).sum()
    loss.backward()
    optimizer.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. running stats
    assert model.fc.weight.grad is not None

    model.freeze_backbone(False)
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())
    model(_batch())
    assert not torch.equal(before["features.1.running_mean"], _batchnorms(model)[0].running_mean)


def test_random_dihedral_applies_all_eight_symmetries_and_keeps_content():
    image = torch.arange(9, dtype=torch.uint8).view(1, 3, 3, 1)
    out = random_dihedral(image.repeat(200, 1, 1, 1), torch.Generator().manual_seed(0))
    variants = {tuple(t.flatten().tolist()) for t in out}
    assert len(variants) == 8
    assert all(sorted(v) == list(range(9)) for v in variants)
    wide = random_dihedral(torch.zeros(16, 3, 5, 1), torch.Generator().manual_seed(0))
    assert wide.shape == (16, 3, 5, 1)  # no rotation of non-square images


@pytest.mark.parametrize(
    "model",
    [
        lambda: CNN("resnet18", tile_shape=(32, 32)),
        lambda: HybridCNNLSTM("resnet18", tile_shape=(32, 32), lstm_hidden_size=8),
    ],
    ids=["cnn", "hybrid"],
)
def test_precomputed_pooled_features_replace_the_backbone_pass(model):
    net = model().eval()
    images = _batch()
    assert net.accepts_cached_features
    with torch.no_grad():
        pooled = net.pooled_features(images)
        assert pooled.shape == (4, net.backbone.out_channels)
        torch.testing.assert_close(net(images, cnn_pooled=pooled), net(images))
        # The features really are used: other features give other logits.
        assert not torch.allclose(net(images, cnn_pooled=pooled + 1.0), net(images))


def test_cnn_map_lstm_cannot_take_pooled_features():
    net = HybridCNNLSTM("resnet18", tile_shape=(32, 32), lstm_hidden_size=8, rnn_input="cnn_map")
    assert not net.accepts_cached_features
    images = _batch()
    with pytest.raises(ValueError, match="cnn_map"):
        net(images, cnn_pooled=torch.zeros(4, net.backbone.out_channels))


def test_cnn_features_alias_is_deprecated_but_still_gives_the_pooled_features():
    net = CNN("resnet18", tile_shape=(32, 32)).eval()
    images = _batch()
    with torch.no_grad(), pytest.warns(FutureWarning, match="pooled_features"):
        features = net.features(images)
    with torch.no_grad():
        torch.testing.assert_close(features, net.pooled_features(images))


class _NCHWInput(nn.Module):
    """Feeds a backbone contiguous NCHW input, as a plain PyTorch loop would."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.contiguous())


@pytest.mark.parametrize("model_cls", [CNN, HybridCNNLSTM])
def test_channels_last_fast_path_matches_a_plain_nchw_model(model_cls):
    """The models run their backbone in channels_last (weights and input); a copy running it
    in plain NCHW gives the same logits to float32 rounding."""
    import copy

    torch.manual_seed(0)
    model = model_cls("resnet18", tile_shape=(32, 32)).eval()
    weights4d = [p for p in model.backbone.parameters() if p.ndim == 4]
    assert weights4d and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights4d)
    plain = copy.deepcopy(model)
    plain.backbone = _NCHWInput(plain.backbone.to(memory_format=torch.contiguous_format))
    assert all(p.is_contiguous() for p in plain.parameters())
    images = _batch(n=6, h=32, w=32)
    with torch.inference_mode():
        fast, reference = model(images), plain(images)
    assert torch.allclose(fast, reference, atol=1e-4, rtol=1e-4)
    assert torch.equal(fast.argmax(1), reference.argmax(1))
