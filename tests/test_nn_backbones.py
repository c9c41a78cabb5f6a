"""Backbone registry and weights: names, custom modules, cache lookup, offline errors."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from skhybrid.nn import available_backbones, build_backbone, cached_weights_path
from skhybrid.nn import weights as weights_module
from skhybrid.nn.weights import MissingWeightsError, imagenet_weights

PAPER_BACKBONES = ("vgg19", "googlenet", "resnet101")


def test_registry_holds_the_papers_backbones_and_light_ones():
    names = available_backbones()
    for name in (*PAPER_BACKBONES, "resnet18", "resnet50", "densenet121", "efficientnet_b0",
                 "mobilenet_v3_small", "convnext_tiny", "efficientnet_lite0"):  # fmt: skip
        assert name in names


def test_backbone_names_include_timm_models_by_prefix():
    from skhybrid.nn.backbones import is_backbone_name

    assert is_backbone_name("efficientnet_lite0") and is_backbone_name("resnet101")
    assert is_backbone_name("timm:resnet10t")
    assert not is_backbone_name("timm:resnet7") and not is_backbone_name("resnet7")
    assert not is_backbone_name(None)
    assert not any(name.startswith("timm:") for name in available_backbones())


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("resnet18", 512),
        ("mobilenet_v3_small", 576),
        ("googlenet", 1024),
        ("vgg19", 512),
        ("efficientnet_lite0", 1280),
        ("timm:resnet10t", 512),
    ],
)
def test_backbone_gives_a_spatial_map_of_its_channels(name, channels):
    backbone = build_backbone(name, weights=None).eval()
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 64, 64))
    assert backbone.out_channels == channels
    assert out.shape[:2] == (2, channels) and out.ndim == 4


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown backbone 'resnet7'") as info:
        build_backbone("resnet7")
    assert "resnet101" in str(info.value) and "vgg19" in str(info.value)
    assert "'timm:<name>'" in str(info.value)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "timm:resnet10t"])
def test_timm_based_backbones_survive_pickling(name):
    import pickle

    backbone = build_backbone(name, weights=None).eval()
    copy = pickle.loads(pickle.dumps(backbone))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(copy(x), backbone(x))
    assert copy.name == name and copy.out_channels == backbone.out_channels


def test_custom_module_backbone_measures_its_channels_and_pooled_output_is_4d():
    custom = nn.Sequential(nn.Conv2d(3, 7, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    backbone = build_backbone(custom, weights=None)
    assert backbone.out_channels == 7
    assert backbone(torch.randn(2, 3, 16, 16)).shape == (2, 7, 1, 1)
    with pytest.raises(ValueError, match="custom module carries its own weights"):
        build_backbone(custom, weights="imagenet")


def test_scratch_backbones_get_batchnorm_momentum_point_one():
    # torchvision's mobilenet_v3_small uses 0.01: running statistics lag on small data.
    backbone = build_backbone("mobilenet_v3_small", weights=None)
    momenta = {m.momentum for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.1}


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, so no real weights on the machine can interfere."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # let get_dir() follow TORCH_HOME
    assert torch.hub.get_dir() == str(tmp_path / "hub")
    return tmp_path


def test_missing_weights_error_is_fast_and_names_file_folder_url_and_way_out(torch_home):
    url = imagenet_weights("resnet18").url
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        build_backbone("resnet18", weights="imagenet")
    assert time.perf_counter() - start < 1.5
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message  # the file
    assert str(torch_home / "hub" / "checkpoints") in message  # the folder
    assert url in message
    assert "weights=None" in message


def test_offline_variable_forbids_downloads(torch_home, monkeypatch):
    monkeypatch.setenv(weights_module.OFFLINE_ENV, "1")
    probes = []
    monkeypatch.setattr(weights_module, "_host_reachable", lambda url: probes.append(url))
    with pytest.raises(MissingWeightsError, match="forbids downloads"):
        build_backbone("mobilenet_v3_small", weights="imagenet")
    assert probes == []  # not even a connection attempt


def test_reachability_probe_is_bounded_even_when_the_lookup_hangs(monkeypatch):
    import socket

    # getaddrinfo ignores socket timeouts; a blocked lookup must not block the caller.
    def stalled(*args, **kwargs):
        time.sleep(3)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", stalled)
    start = time.perf_counter()
    assert not weights_module._host_reachable("https://download.pytorch.org/x.pth", 0.3)
    assert time.perf_counter() - start < 1.0


def test_imagenet_weights_are_read_from_torchs_cache(torch_home):
    from torchvision.models import get_model

    # A randomly initialised torchvision state dict under the file name of the weights URL.
    reference = get_model("mobilenet_v3_small", weights=None)
    path = cached_weights_path(imagenet_weights("mobilenet_v3_small").url)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)

    backbone = build_backbone("mobilenet_v3_small", weights="imagenet")
    loaded = backbone.features.state_dict()
    expected = reference.features.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_weights_from_a_path_ignore_the_classifier_head(tmp_path):
    from torchvision.models import get_model

    # A fine-tuned checkpoint with another number of classes still gives its features.
    reference = get_model("resnet18", weights=None, num_classes=2)
    path = tmp_path / "finetuned.pt"
    torch.save({"state_dict": reference.state_dict()}, path)
    backbone = build_backbone("resnet18", weights=path)
    assert torch.equal(backbone.features[0].weight, reference.conv1.weight)


def test_mismatching_weights_file_is_rejected(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="does not match the backbone"):
        build_backbone("resnet18", weights=path)
    with pytest.raises(FileNotFoundError, match="weights=None"):
        build_backbone("resnet18", weights=tmp_path / "absent.pt")
