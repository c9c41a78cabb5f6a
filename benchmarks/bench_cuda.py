"""CUDA: the estimators on a GPU against plain loops (skipped without a CUDA device).

Every reference is a hand-written PyTorch loop on a module of the same architecture, the same
uint8 tiles and batch size, bf16 autocast and channels_last, with pinned uint8 batches:

- training: ``HybridCNNLSTMClassifier("resnet101")`` ``fit`` per epoch (the paper's largest
  backbone, defaults: ``precision="auto"`` -> bf16 on GPUs that support it) against the loop;
  goal >= 0.8x.
- inference: ``predict_proba`` against a bf16 ``inference_mode`` loop on the fitted
  ``module_``; goal >= 0.9x. The note gives the largest difference of their probabilities.
- transfer: uint8 batches from pinned memory (what the estimators send) against float32
  batches from pageable memory (what a float pipeline would send); informational.

The figures need a GPU: this module reports itself as skipped on a CPU-only machine.
:func:`measure` takes the device, so the tests run the same code on the CPU (smoke sizes,
resnet18) to keep it working between GPU runs.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ._common import SkipBenchmark, compare, make_row, scale


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure the estimators on CUDA; see the module docstring."""
    try:
        import torch

        import skhybrid.estimators  # noqa: F401
    except ImportError as exc:
        raise SkipBenchmark(f"skhybrid.estimators is not available ({exc})") from exc
    if not torch.cuda.is_available():
        raise SkipBenchmark("no CUDA device (run this benchmark on a GPU machine)")
    return measure("cuda")


def measure(device: str) -> list[dict[str, Any]]:
    """The rows of this benchmark on ``device`` (``"cuda"``; ``"cpu"`` to test the code)."""
    import torch

    from skhybrid import HybridCNNLSTMClassifier

    cuda = device.startswith("cuda")
    backbone = scale("resnet101", "resnet101", "resnet18")
    size = scale(224, 224, 32)
    n = scale(1024, 256, 32)
    batch = scale(128, 64, 16)
    epochs = scale(2, 1, 1)
    repeat = scale(2, 2, 1)
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, 2, n)
    name = torch.cuda.get_device_name() if cuda else device
    setting = f"{backbone} hybrid, {n} tiles {size}x{size}, batch {batch}, {name}"
    sync = torch.cuda.synchronize if cuda else None

    def estimator(max_epochs: int) -> Any:
        return HybridCNNLSTMClassifier(
            backbone,
            weights=None,
            freeze_epochs=0,
            max_epochs=max_epochs,
            batch_size=batch,
            valid_size=None,
            device=device,
            verbose=0,
            random_state=0,
        )

    def to_device(array: np.ndarray) -> Any:
        tensor = torch.from_numpy(array)
        return tensor.pin_memory().to(device, non_blocking=True) if cuda else tensor

    # Warm-up (cuDNN autotuning, the caching allocator); its module is the loop's module.
    warm = estimator(1).fit(tiles[: 2 * batch], y[: 2 * batch])
    bf16 = warm.precision_ == "bf16"
    loop_module = copy.deepcopy(warm.module_)
    targets = y.astype(np.int64)

    def manual_epoch(module: Any = loop_module, count: int = n) -> None:
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        module.train()
        order = np.random.default_rng(1).permutation(count)
        for start in range(0, count, batch):
            index = order[start : start + batch]
            x = to_device(tiles[index])
            target = to_device(targets[index])
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
                logits = module(x).float()
            criterion(logits, target).backward()
            optimizer.step()

    manual_epoch(count=2 * batch)
    clf = estimator(epochs)

    def loop() -> None:
        for _ in range(epochs):
            manual_epoch()

    times = compare(
        {"fit": lambda: clf.fit(tiles, y), "loop": loop}, repeat=repeat, warmup=0, sync=sync
    )
    rows = [
        make_row(
            f"CUDA: HybridCNNLSTMClassifier({backbone}).fit per epoch",
            n * epochs / times["fit"],
            n * epochs / times["loop"],
            "tiles/s",
            goal=0.8,
            reference_name=f"hand-written {clf.precision_} loop, same architecture",
            note=f"{setting}; precision='auto' -> {clf.precision_}",
        )
    ]

    module = clf.module_

    def manual_predict() -> np.ndarray:
        module.eval()
        out = []
        autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)
        with torch.inference_mode(), autocast:
            for start in range(0, n, batch):
                logits = module(to_device(tiles[start : start + batch])).float()
                out.append(logits.softmax(1).cpu().numpy())
        return np.concatenate(out)

    agree = float(np.abs(clf.predict_proba(tiles) - manual_predict()).max())
    times = compare(
        {"predict": lambda: clf.predict_proba(tiles), "loop": manual_predict},
        repeat=scale(3, 2, 1),
        warmup=0,
        sync=sync,
    )
    rows.append(
        make_row(
            f"CUDA: HybridCNNLSTMClassifier({backbone}).predict_proba",
            n / times["predict"],
            n / times["loop"],
            "tiles/s",
            goal=0.9,
            reference_name=f"hand-written {clf.precision_} inference loop, same module",
            note=f"{setting}; max abs diff of probabilities {agree:.1e}",
        )
    )

    if cuda:
        pinned = torch.from_numpy(tiles[:batch]).pin_memory()
        pageable = torch.from_numpy(tiles[:batch].astype(np.float32))
        times = compare(
            {
                "uint8": lambda: pinned.to(device, non_blocking=True),
                "float": lambda: pageable.to(device),
            },
            repeat=10,
            sync=sync,
        )
        rows.append(
            make_row(
                "CUDA: batch transfer, pinned uint8",
                batch / times["uint8"],
                batch / times["float"],
                "tiles/s",
                reference_name="pageable float32",
                note=f"batch of {batch} tiles {size}x{size}",
            )
        )
    return rows
