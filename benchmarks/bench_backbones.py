"""Backbones: EfficientNet-Lite0 beside resnet18 and resnet101, and each against the conv peak.

``efficientnet_lite0`` is the backbone with ImageNet weights that work offline; this benchmark
says what it costs next to the paper's ``resnet101`` and the light ``resnet18``. Each backbone
runs inside skhybrid's :class:`~skhybrid.nn.CNN` (uint8 tiles in, logits out) at 224x224, in the
estimators' default precision (``precision="auto"``: bf16 autocast where the device computes it
natively, else fp32), on the CUDA device when there is one, else the CPU:

- forward (``inference_mode``, eval) and training step (forward, backward, Adam) throughput in
  images/s, each model measured interleaved with the others (:func:`~benchmarks._common.compare`);
- each throughput times the model's FLOPs per image (counted with
  ``torch.utils.flop_counter.FlopCounterMode``; the training count includes the backward pass,
  a convolution's counted as twice its forward: see :func:`_flops`)
  is the achieved GFLOP/s, compared with the machine's conv peak measured in the same run
  (interleaved with the models) on a large dense 3x3 convolution, 256 channels at 56x56
  (``ratio`` = fraction of that peak; a ResNet's large convolutions can come close to 1). Depthwise convolutions do few
  FLOPs per byte moved, so EfficientNet reaches a smaller fraction than the ResNets;
- EfficientNet-Lite0's throughput against resnet101's: goal >= 2x for forward and training
  (it does ~1/20 of the FLOPs; the goal says choosing it over the paper's default pays).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import SkipBenchmark, compare, make_row, scale

MODELS = ("efficientnet_lite0", "resnet18", "resnet101")
#: EfficientNet-Lite0's throughput over resnet101's that the goal asks for.
LITE_OVER_RESNET101_GOAL = 2.0


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure the backbones; see the module docstring."""
    try:
        import timm  # noqa: F401
        import torch

        import skhybrid.nn  # noqa: F401
    except ImportError as exc:
        raise SkipBenchmark(f"skhybrid.nn with timm is not available ({exc})") from exc
    return measure("cuda" if torch.cuda.is_available() else "cpu")


def _flops(fn: Any) -> float:
    """FLOPs of one call of ``fn``, counted by ``FlopCounterMode``.

    torch's formula for ``convolution_backward`` ignores ``groups``, so it counts a depthwise
    convolution's backward as a dense one's (64x too many for 64 channels, which would make
    EfficientNet's training step look 40x costlier than its forward). The backward of a
    convolution is instead counted as twice its forward (gradients of input and weights).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    counts = counter.get_flop_counts().get("Global", {})
    total = float(counter.get_total_flops())
    backward = counts.get(torch.ops.aten.convolution_backward, 0)
    if backward:
        total += 2 * counts.get(torch.ops.aten.convolution, 0) - backward
    return total


def conv_peak_step(device: str, precision: str, *, batch: int, channels: int, size: int) -> Any:
    """A large dense 3x3 convolution (the machine's practical conv peak) and its FLOPs."""
    import torch

    from skhybrid.estimators._runtime import autocast

    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device).eval()
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.inference_mode(), autocast(device, precision):
            conv(x)

    return step, _flops(step)


def measure(device: str) -> list[dict[str, Any]]:
    """The rows of this benchmark on ``device`` (``"cuda"`` or ``"cpu"``)."""
    import torch

    from skhybrid.estimators._runtime import autocast, resolve_precision
    from skhybrid.nn import CNN

    cuda = device.startswith("cuda")
    size = scale(224, 224, 32)
    batch = scale(32 if not cuda else 128, 8 if not cuda else 64, 2)
    repeat = scale(5, 3, 1)
    warmup = scale(1, 1, 0)  # smoke: the FLOP-counting calls already ran every model once
    precision = resolve_precision("auto", device)
    sync = torch.cuda.synchronize if cuda else None
    rng = np.random.default_rng(0)
    tiles = torch.from_numpy(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 2, batch)).to(device)
    tiles = tiles.to(device)

    forward_fns, train_fns, flops = {}, {}, {}
    for name in MODELS:
        torch.manual_seed(0)
        module = CNN(name, 2, weights=None, tile_shape=(size, size)).to(device)
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)

        def forward(module: Any = module) -> None:
            module.eval()
            with torch.inference_mode(), autocast(device, precision):
                module(tiles).softmax(1)

        def train(module: Any = module, optimizer: Any = optimizer) -> None:
            module.train()
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, precision):
                loss = torch.nn.functional.cross_entropy(module(tiles), y)
            loss.backward()
            optimizer.step()

        forward_fns[name], train_fns[name] = forward, train
        # FLOPs per image do not depend on the batch or the precision; count them once.
        flops[name, "forward"] = _flops(forward) / batch
        flops[name, "training"] = _flops(train) / batch
    peak_step, peak_flops = conv_peak_step(
        device, precision, batch=scale(16, 8, 1), channels=scale(256, 256, 32), size=56
    )
    # The peak is timed interleaved with the models, in both loops, so that load from other
    # processes weighs on it as on them; the faster of its two medians is the peak.
    times = {
        "forward": compare(
            {**forward_fns, "peak": peak_step}, repeat=repeat, warmup=warmup, sync=sync
        ),
        "training": compare(
            {**train_fns, "peak": peak_step}, repeat=repeat, warmup=warmup, sync=sync
        ),
    }
    peak = peak_flops / min(times["forward"]["peak"], times["training"]["peak"]) / 1e9
    where = torch.cuda.get_device_name() if cuda else f"cpu, {torch.get_num_threads()} threads"
    setting = f"{size}x{size}, batch {batch}, {precision}, {where}"
    rows = []
    for kind, label in (("forward", "inference forward"), ("training", "training step")):
        for name in MODELS:
            images_per_s = batch / times[kind][name]
            gflop = flops[name, kind] / 1e9
            rows.append(
                make_row(
                    f"backbones: {name} {label} vs conv peak",
                    images_per_s * gflop,
                    peak,
                    "GFLOP/s",
                    reference_name="dense 3x3 conv peak",
                    note=f"{images_per_s:.3g} images/s x {gflop:.3g} GFLOP/image; {setting}",
                )
            )
        lite, reference = batch / times[kind][MODELS[0]], batch / times[kind]["resnet101"]
        rows.append(
            make_row(
                f"backbones: efficientnet_lite0 vs resnet101 {label}",
                lite,
                reference,
                "images/s",
                goal=LITE_OVER_RESNET101_GOAL,
                reference_name="resnet101",
                note=f"resnet18 {batch / times[kind]['resnet18']:.3g} images/s; {setting}",
            )
        )
    return rows
