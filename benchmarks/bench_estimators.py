"""Estimator overhead, CPU fast path, bag prediction and phase-1 feature caching.

Every reference is a hand-written PyTorch loop on the *same* module (the estimator's fitted
``module_``, or a copy of it), the same uint8 tiles, batch size, optimiser, loss and precision:

- overhead: ``fit`` (wall time per epoch, all set-up included) and ``predict_proba``
  throughput of ``CNNClassifier`` / ``HybridCNNLSTMClassifier`` against the loop; goal >= 0.95x.
- CPU fast path: the estimator's default settings (``precision="auto"``), and a
  channels_last + bf16 autocast + inference_mode loop, against a plain fp32 NCHW ``no_grad``
  loop; goal >= 2x. An fp32 channels_last loop shows what the layout alone gives. Overhead
  rows use ``precision="fp32"`` like their loops.
- accuracy: image accuracy of seeded fits in the default precision and in fp32.
- bags: ``predict_proba`` on bags against the backbone's forward pass alone (goal >= 0.9x) and
  against the same module's forward on the flattened tiles (the bag handling; goal >= 0.95x),
  for both estimators on resnet18 and for the hybrid on the paper's resnet101.
- phase 1: a frozen-backbone epoch with the feature cache against one recomputing the backbone;
  goal >= 3x.

resnet18 from scratch (no download); 224x224 tiles in full mode, 64x64 in quick mode.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np

from ._common import SkipBenchmark, compare, make_row, scale


def _import() -> Any:
    try:
        import torch

        from skhybrid import estimators
    except ImportError as exc:
        raise SkipBenchmark(f"skhybrid.estimators is not available ({exc})") from exc
    return torch, estimators


def _data(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return tiles, rng.integers(0, 2, n)


def _estimator(cls: Any, batch_size: int, epochs: int, **params: Any) -> Any:
    """An estimator on resnet18; fp32 unless told, to compare with fp32 hand-written loops."""
    params.setdefault("precision", "fp32")
    params.setdefault("backbone", "resnet18")
    return cls(
        weights=None,
        freeze_epochs=params.pop("freeze_epochs", 0),
        max_epochs=epochs,
        batch_size=batch_size,
        valid_size=params.pop("valid_size", None),
        device="cpu",
        verbose=0,
        random_state=params.pop("random_state", 0),
        **params,
    )


def _manual_epoch(torch: Any, module: Any, tiles: np.ndarray, y: np.ndarray, batch: int) -> None:
    """One training epoch written by hand: shuffle, gather, forward, loss, backward, step."""
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    module.train()
    order = np.random.default_rng(1).permutation(len(tiles))
    targets = torch.from_numpy(y.astype(np.int64))
    for start in range(0, len(order), batch):
        index = order[start : start + batch]
        x = torch.from_numpy(tiles[index])
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(module(x), targets[index])
        loss.backward()
        optimizer.step()


def _manual_predict(
    torch: Any, module: Any, tiles: np.ndarray, batch: int, *, bf16: bool = False
) -> np.ndarray:
    module.eval()
    out = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(tiles), batch):
            logits = module(torch.from_numpy(tiles[start : start + batch])).float()
            out.append(logits.softmax(1).numpy())
    return np.concatenate(out)


def _plain_fp32(torch: Any, module: Any) -> Any:
    """A copy of ``module`` that runs its backbone on NCHW input, as a plain loop would.

    The models turn uint8 NHWC batches into channels_last float tensors (a free permute),
    and a convolution follows the layout of its input: feeding them as they are would run
    the whole backbone in channels_last. The plain reference makes the input contiguous
    NCHW first and keeps the weights NCHW.
    """
    plain = copy.deepcopy(module)

    class _NCHWInput(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner.to(memory_format=torch.contiguous_format)

        def forward(self, x: Any) -> Any:
            return self.inner(x.contiguous())

    plain.backbone = _NCHWInput(plain.backbone)
    return plain


def _plain_predict(torch: Any, module: Any, tiles: np.ndarray, batch: int) -> None:
    module.eval()
    with torch.no_grad():
        for start in range(0, len(tiles), batch):
            module(torch.from_numpy(tiles[start : start + batch])).softmax(1)


def _timed(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure the estimators; see the module docstring."""
    torch, estimators = _import()
    size = scale(224, 64, 32)
    n = scale(128, 256, 32)
    batch = scale(32, 32, 16)
    epochs = scale(2, 2, 1)
    repeat = scale(3, 3, 1)
    tiles, y = _data(n, size)
    setting = f"resnet18, {n} tiles {size}x{size}, batch {batch}"
    rows = []
    classes = {
        "CNNClassifier": estimators.CNNClassifier,
        "HybridCNNLSTMClassifier": estimators.HybridCNNLSTMClassifier,
    }
    fitted = {}
    for name, cls in classes.items():
        # (a) fit overhead: wall time of fit (init, input checks, skorch) per epoch.
        # Warm-up on two batches: imports, oneDNN kernel selection for these shapes.
        # The loop trains a copy of the warm-up's module (same architecture and settings);
        # fits and loops alternate so background load hits both alike.
        warm = _estimator(cls, batch, 1).fit(tiles[: 2 * batch], y[: 2 * batch])
        loop_module = copy.deepcopy(warm.module_)
        _manual_epoch(torch, loop_module, tiles[: 2 * batch], y[: 2 * batch], batch)
        estimator = _estimator(cls, batch, epochs)

        def loop(m: Any = loop_module) -> None:
            for _ in range(epochs):
                _manual_epoch(torch, m, tiles, y, batch)

        times = compare(
            {"fit": lambda est=estimator: est.fit(tiles, y), "loop": loop},
            repeat=scale(2, 3, 1),
            warmup=0,
        )
        fit_time, manual_time = times["fit"] / epochs, times["loop"] / epochs
        module = estimator.module_
        fitted[name] = estimator
        rows.append(
            make_row(
                f"overhead: {name}.fit per epoch",
                n / fit_time,
                n / manual_time,
                "tiles/s",
                goal=0.95,
                reference_name="hand-written loop, same module",
                note=setting,
            )
        )
        # (a) predict overhead.
        proba = estimator.predict_proba(tiles[:batch])
        reference = _manual_predict(torch, module, tiles[:batch], batch)
        agree = float(np.abs(proba - reference).max())
        estimator.predict_proba(tiles[: 2 * batch])  # warm-up
        times = compare(
            {
                "estimator": lambda est=estimator: est.predict_proba(tiles),
                "loop": lambda m=module: _manual_predict(torch, m, tiles, batch),
            },
            repeat=repeat,
            warmup=0,
        )
        est_pred, man_pred = times["estimator"], times["loop"]
        rows.append(
            make_row(
                f"overhead: {name}.predict_proba",
                n / est_pred,
                n / man_pred,
                "tiles/s",
                goal=0.95,
                reference_name="hand-written loop, same module",
                note=f"max abs diff of probabilities {agree:.1e}",
            )
        )

    # (b) CPU fast path, inference: plain fp32 NCHW loop vs the estimator's defaults
    # (precision="auto": bf16 where the CPU computes it natively; channels_last backbone;
    # inference_mode) and a hand-written channels_last + bf16 + inference_mode loop.
    from skhybrid.estimators._runtime import resolve_precision

    estimator = copy.deepcopy(fitted["CNNClassifier"]).set_params(precision="auto")
    default_precision = resolve_precision("auto", "cpu")
    module = estimator.module_
    plain = _plain_fp32(torch, module)
    _plain_predict(torch, plain, tiles[:batch], batch)
    _manual_predict(torch, module, tiles[:batch], batch, bf16=True)
    estimator.predict_proba(tiles[:batch])
    times = compare(
        {
            "plain": lambda: _plain_predict(torch, plain, tiles, batch),
            # the same loop on the module as the estimators keep it: channels_last, fp32
            "channels_last": lambda: _plain_predict(torch, module, tiles, batch),
            "estimator": lambda: estimator.predict_proba(tiles),
            "bf16 loop": lambda: _manual_predict(torch, module, tiles, batch, bf16=True),
        },
        repeat=repeat,
        warmup=0,
    )
    plain_time, cl_time = times["plain"], times["channels_last"]
    est_time, fast_time = times["estimator"], times["bf16 loop"]
    fp32 = _manual_predict(torch, module, tiles[:batch], batch)
    bf16 = _manual_predict(torch, module, tiles[:batch], batch, bf16=True)
    default_proba = estimator.predict_proba(tiles[:batch])
    rows += [
        make_row(
            "CPU fast path: CNNClassifier.predict_proba, default settings",
            n / est_time,
            n / plain_time,
            "tiles/s",
            goal=2.0,
            reference_name="plain fp32 NCHW loop",
            note=f"precision='auto' -> {default_precision}; max abs diff of probabilities "
            f"vs fp32 {np.abs(default_proba - fp32).max():.1e}",
        ),
        make_row(
            "CPU fast path: channels_last fp32 loop (layout alone)",
            n / cl_time,
            n / plain_time,
            "tiles/s",
            reference_name="plain fp32 NCHW loop",
            note="the share of the gain that comes from the memory layout",
        ),
        make_row(
            "CPU fast path: channels_last + bf16 autocast + inference_mode loop",
            n / fast_time,
            n / plain_time,
            "tiles/s",
            goal=2.0,
            reference_name="plain fp32 NCHW loop",
            note=f"max abs diff of probabilities vs fp32 {np.abs(fp32 - bf16).max():.1e}",
        ),
    ]
    # (b) training: the estimator with its default settings against the plain fp32 loop.
    plain_train = _timed(lambda: _manual_epoch(torch, plain, tiles, y, batch), epochs)
    _estimator(estimators.CNNClassifier, batch, 1, precision="auto").fit(
        tiles[: 2 * batch], y[: 2 * batch]
    )
    default_estimator = _estimator(estimators.CNNClassifier, batch, epochs, precision="auto")
    default_fit = _timed(lambda: default_estimator.fit(tiles, y), 1) / epochs
    rows.append(
        make_row(
            "CPU fast path: CNNClassifier.fit per epoch, default settings",
            n / default_fit,
            n / plain_train,
            "tiles/s",
            goal=2.0,
            reference_name="plain fp32 NCHW training loop",
            note=f"precision='auto' -> {default_precision}",
        )
    )

    # (b) accuracy effect of the default precision: image-level test accuracy of a seeded fit
    # on synthetic histology (patient-wise split) in the default precision and in fp32.
    rows.append(_precision_accuracy_row(estimators, default_precision))

    # (c) predict on bags against the backbone's forward pass alone (the reference),
    # and against the module's own forward on the same tiles (what the bag handling costs).
    n_bags = max(1, n // 9)
    bags = tiles[: n_bags * 9].reshape(n_bags, 9, size, size, 3)
    flat = bags.reshape(-1, size, size, 3)
    fitted_bags = dict(fitted)
    if scale(True, True, False):
        # The paper's backbone: phase 1 only (cheap with the feature cache), for its speed.
        fitted_bags["HybridCNNLSTMClassifier(backbone='resnet101')"] = _estimator(
            estimators.HybridCNNLSTMClassifier,
            batch,
            1,
            backbone="resnet101",
            freeze_epochs=1,
        ).fit(tiles[:batch], y[:batch])
    for name, est in fitted_bags.items():
        est.predict_proba(bags[:2])  # warm-up
        rows += _bag_rows(torch, name, est, bags, flat, batch, repeat)

    # (d) phase 1: frozen-backbone epochs with the feature cache (the default) against the
    # same epochs recomputing the backbone (cache_features=False). Steady-state epochs are
    # compared (skorch's per-epoch "dur"); the one-off feature pass is reported in the note.
    phase_epochs = scale(4, 4, 2)
    durations = {}
    for cache in (True, False):
        frozen = _estimator(
            estimators.CNNClassifier,
            batch,
            phase_epochs,
            freeze_epochs=phase_epochs,
            cache_features=cache,
        )
        frozen.fit(tiles, y)
        durations[cache] = list(frozen.history_[:, "dur"])
    cached_epoch = float(np.median(durations[True][1:]))
    plain_epoch = float(np.median(durations[False]))
    rows.append(
        make_row(
            "phase 1: frozen-CNN epoch with the feature cache (default)",
            n / cached_epoch,
            n / plain_epoch,
            "tiles/s",
            goal=3.0,
            reference_name="same epoch recomputing the backbone (cache_features=False)",
            note=f"first epoch fills the cache: {durations[True][0]:.2f} s vs "
            f"{plain_epoch:.2f} s per uncached epoch; {phase_epochs} frozen epochs",
        )
    )
    return rows


def _bag_rows(
    torch: Any,
    name: str,
    estimator: Any,
    bags: np.ndarray,
    flat: np.ndarray,
    batch: int,
    repeat: int,
) -> list[dict[str, Any]]:
    """Bag prediction against the backbone alone and against the whole module's forward."""
    module = estimator.module_
    module.eval()

    def forward(features_only: bool) -> None:
        with torch.inference_mode():
            for start in range(0, len(flat), batch):
                x = torch.from_numpy(flat[start : start + batch])
                module.cnn_features(x) if features_only else module(x).softmax(1)

    times = compare(
        {
            "bags": lambda: estimator.predict_proba(bags),
            "backbone": lambda: forward(True),
            "module": lambda: forward(False),
        },
        repeat=repeat,
        warmup=0,
    )
    bag_time, backbone_time, module_time = times["bags"], times["backbone"], times["module"]
    n_bags = len(bags)
    title = f"bags: {name}.predict_proba on {n_bags} bags of 9 tiles"
    return [
        make_row(
            title,
            n_bags / bag_time,
            n_bags / backbone_time,
            "bags/s",
            goal=0.9,
            reference_name="backbone forward alone",
        ),
        make_row(
            title + ", bag handling",
            n_bags / bag_time,
            n_bags / module_time,
            "bags/s",
            goal=0.95,
            reference_name="the same module's forward on the flattened tiles",
        ),
    ]


def _precision_accuracy_row(estimators: Any, default_precision: str) -> dict[str, Any]:
    """Image accuracy of the same seeded fits in the default precision and in fp32.

    One fit on a few dozen test images moves by several images with any change of rounding
    (a 1-ulp change in the input normalisation once moved the fp32 fit from 0.72 to 0.56), so
    the figure is the mean over several data sets, splits and seeds, with the share of test
    images on which the two precisions predict the same label.
    """
    from skhybrid import SubImageTiler, make_histology
    from skhybrid.splits import patient_split_indices

    seeds = scale(3, 2, 1)
    accuracy: dict[str, list[float]] = {"auto": [], "fp32": []}
    agree, n_test = [], 0
    for seed in range(seeds):
        data = make_histology(
            n_images=scale(120, 60, 24), image_size=(96, 144), difficulty=0.3, random_state=seed
        )
        bags = SubImageTiler(grid=(3, 3), tile_size=(32, 32)).fit_transform(data.images)
        train, test = patient_split_indices(data.target, data.patient, random_state=seed)
        predicted = {}
        for precision in ("auto", "fp32"):
            clf = _estimator(
                estimators.HybridCNNLSTMClassifier,
                32,
                scale(8, 6, 2),
                precision=precision,
                lr=1e-3,
                lstm_hidden_size=64,
                valid_size=0.2,
                random_state=seed,
            ).fit(bags[train], data.target[train])
            predicted[precision] = clf.predict(bags[test])
            accuracy[precision].append(float(np.mean(predicted[precision] == data.target[test])))
        agree.append(float(np.mean(predicted["auto"] == predicted["fp32"])))
        n_test += len(test)
    return make_row(
        "accuracy: HybridCNNLSTMClassifier, default precision vs fp32",
        float(np.mean(accuracy["auto"])),
        float(np.mean(accuracy["fp32"])),
        "image accuracy",
        reference_name="same seeded fits in fp32",
        note=f"precision='auto' -> {default_precision}; mean of {seeds} synthetic histology "
        f"sets, patient-wise splits and seeds ({n_test} test images in all); per fit "
        f"{_fmt_list(accuracy['auto'])} vs {_fmt_list(accuracy['fp32'])}; same label on "
        f"{np.mean(agree):.0%} of test images",
    )


def _fmt_list(values: list[float]) -> str:
    return "/".join(f"{value:.2f}" for value in values)
