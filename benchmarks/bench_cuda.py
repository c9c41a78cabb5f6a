"""CUDA: the estimators on a GPU against plain loops (skipped without a CUDA device).

Every reference is a hand-written PyTorch loop on the estimator's own fitted ``module_``, the
same uint8 tiles and batch size, bf16 autocast and channels_last, with pinned uint8 batches:

- training: ``HybridCNNLSTMClassifier("resnet101")`` ``fit`` per epoch (the paper's largest
  backbone, defaults: ``precision="auto"`` -> bf16 on GPUs that support it) against the loop;
  goal >= 0.8x.
- inference: ``predict_proba`` against a bf16 ``inference_mode`` loop; goal >= 0.9x.
- transfer: uint8 batches from pinned memory (what the estimators send) against float32
  batches from pageable memory (what a float pipeline would send); informational.

The figures need a GPU: this module reports itself as skipped on a CPU-only machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import SkipBenchmark, make_row, scale


def _timed(torch: Any, fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``fn`` with the GPU synchronised before and after each call."""
    times = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure the estimators on CUDA; see the module docstring."""
    try:
        import torch

        from skhybrid import HybridCNNLSTMClassifier
    except ImportError as exc:
        raise SkipBenchmark(f"skhybrid.estimators is not available ({exc})") from exc
    if not torch.cuda.is_available():
        raise SkipBenchmark("no CUDA device (run this benchmark on a GPU machine)")
    n = scale(1024, 256, 64)
    batch = scale(128, 64, 32)
    epochs = scale(2, 1, 1)
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    y = rng.integers(0, 2, n)
    setting = f"resnet101 hybrid, {n} tiles 224x224, batch {batch}, {torch.cuda.get_device_name()}"

    def estimator(max_epochs: int) -> Any:
        return HybridCNNLSTMClassifier(
            "resnet101",
            weights=None,
            freeze_epochs=0,
            max_epochs=max_epochs,
            batch_size=batch,
            valid_size=None,
            device="cuda",
            verbose=0,
            random_state=0,
        )

    estimator(1).fit(tiles[: 2 * batch], y[: 2 * batch])  # warm-up: cuDNN, allocator
    clf = estimator(epochs)
    fit_time = _timed(torch, lambda: clf.fit(tiles, y), 1) / epochs
    module = clf.module_
    bf16 = clf.precision_ == "bf16"
    targets = torch.from_numpy(y.astype(np.int64))

    def manual_epoch() -> None:
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        module.train()
        order = np.random.default_rng(1).permutation(n)
        for start in range(0, n, batch):
            index = order[start : start + batch]
            x = torch.from_numpy(tiles[index]).pin_memory().to("cuda", non_blocking=True)
            target = targets[index].to("cuda", non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                logits = module(x).float()
            criterion(logits, target).backward()
            optimizer.step()

    manual_epoch()  # warm-up
    manual_time = _timed(torch, manual_epoch, epochs)
    rows = [
        make_row(
            "CUDA: HybridCNNLSTMClassifier(resnet101).fit per epoch",
            n / fit_time,
            n / manual_time,
            "tiles/s",
            goal=0.8,
            reference_name=f"hand-written {clf.precision_} loop, same module",
            note=f"{setting}; precision='auto' -> {clf.precision_}",
        )
    ]

    def manual_predict() -> None:
        module.eval()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, n, batch):
                x = torch.from_numpy(tiles[start : start + batch]).pin_memory()
                module(x.to("cuda", non_blocking=True)).float().softmax(1).cpu()

    clf.predict_proba(tiles[:batch])
    manual_predict()
    predict_time = _timed(torch, lambda: clf.predict_proba(tiles), scale(3, 2, 1))
    manual_predict_time = _timed(torch, manual_predict, scale(3, 2, 1))
    rows.append(
        make_row(
            "CUDA: HybridCNNLSTMClassifier(resnet101).predict_proba",
            n / predict_time,
            n / manual_predict_time,
            "tiles/s",
            goal=0.9,
            reference_name=f"hand-written {clf.precision_} inference loop",
            note=setting,
        )
    )

    pinned = torch.from_numpy(tiles[:batch]).pin_memory()
    pageable = torch.from_numpy(tiles[:batch].astype(np.float32))
    uint8_time = _timed(torch, lambda: pinned.to("cuda", non_blocking=True), 10)
    float_time = _timed(torch, lambda: pageable.to("cuda"), 10)
    rows.append(
        make_row(
            "CUDA: batch transfer, pinned uint8",
            batch / uint8_time,
            batch / float_time,
            "tiles/s",
            reference_name="pageable float32",
            note=f"batch of {batch} tiles 224x224",
        )
    )
    return rows
