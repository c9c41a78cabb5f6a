"""Long runs: memory does not grow across fits, epochs or ``GridSearchCV`` candidates, and a
fitted model keeps no training data and no tensors of earlier fits.

Sized for a 2-core CI machine (``OMP_NUM_THREADS=1``, about 25 s of CPU in all): tiny models
from ``tests/_reliability.py`` on 16 or 24 synthetic images of four 16x16 tiles. Every bound
was checked against a deliberate leak, so the assertions can fail: the controls of
``test_the_memory_probes_see_a_leak``, the planted tiles and the pickled scheduler in the
tests of part (b). The measured figures are in ``docs/reliability.md``.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
import types
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from skorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).parent))
from _reliability import tiny_bags, tiny_cnn, tiny_hybrid

MB = 2**20


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tiny_bags(16)


# -- (a) many fits and (c) many epochs, in a fresh interpreter ----------------------------------
#: In the test process, memory freed by earlier tests (a few GB after the command-line tests)
#: absorbs a leak without the resident set size (RSS) moving, so these run in a fresh
#: interpreter. There glibc's malloc gets fixed thresholds (by default it moves blocks from
#: mmap to the heap as it adapts, which adds noise). The same process then leaks on purpose,
#: to show that each probe sees a leak.
_CHILD = r"""
import gc, json, os, sys
sys.path.insert(0, sys.argv[1])
from skorch.callbacks import Callback
from _reliability import tiny_bags, tiny_cnn

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def peak():  # VmHWM: the peak RSS (as getrusage's ru_maxrss) since the last reset_peak()
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

def reset_peak():  # Linux >= 4.0: the peak restarts from the current RSS
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True

class Probe(Callback):
    def __init__(self, leak=False):
        self.leak = leak
    def on_train_begin(self, net, **kwargs):
        self.peak, self.rss, self.kept = [], [], []
        reset_peak()
    def on_epoch_end(self, net, **kwargs):
        if self.leak:  # control: a copy of the weights kept at every epoch end
            self.kept.append({k: v.clone() for k, v in net.module_.state_dict().items()})
        self.rss.append(rss())
        self.peak.append(peak())

def epochs(leak):
    bags, y, _ = tiny_bags(16)
    probe = Probe(leak)
    tiny_cnn(max_epochs=12, callbacks=[("probe", probe)]).fit(bags, y)
    return {"rss": probe.rss, "peak": probe.peak}

def fits(n, keep):
    bags, y, _ = tiny_bags(16)
    kept, out = [], {"rss": [], "peak": []}
    reset_peak()
    for _ in range(n):
        clf = tiny_cnn().fit(bags, y)
        clf.predict_proba(bags)
        if keep:  # control: every fitted model kept alive
            kept.append(clf)
        del clf
        gc.collect()
        out["rss"].append(rss())
        out["peak"].append(peak())
    return out

result = {"peak_resets": reset_peak(), "epochs": epochs(False), "fits": fits(10, False)}
result["epochs_leak"] = epochs(True)
result["fits_kept"] = fits(5, True)
print(json.dumps(result))
"""

#: Allowed growth of the RSS and of the peak RSS from the 3rd to the 10th fit, in MB. A fitted
#: tiny CNN holds about 19 MB (weights 3.7 MB, Adam's two moments, the gradients, the best
#: epoch's copy), so a leak of a copy of the weights per fit (3.7 MB x 7 fits) exceeds it.
#: Measured: 0.0 MB; keeping the fitted models: 15 MB or more per model.
FIT_GROWTH_BOUND = 20

#: Allowed rise, in MB, of the peak RSS from the end of epoch 2 to the end of epoch 12, and of
#: the RSS from epoch 6 to epoch 12. The first epochs that improve on the best one add a step of
#: up to two copies of the weights (the best epoch's snapshot is taken while the previous one is
#: still alive, and the heap keeps the space): measured 0.8-3.5 MB for the peak (up to 7.3 MB
#: on 24 images), then flat (under 1.2 MB from epoch 6). Keeping a copy of the weights
#: (3.7 MB) at every epoch end: 37 MB and 22 MB.
EPOCH_GROWTH_BOUND = 10


@pytest.fixture(scope="module")
def memory() -> dict[str, dict[str, list[int]]]:
    """RSS and peak RSS (bytes) after every epoch of a 12-epoch fit and after each of 10 fits,
    then the same probes with deliberate leaks: one fresh interpreter, about 15 s. Each
    phase restarts the peak (``/proc/self/clear_refs``) where the kernel allows it."""
    if not Path("/proc/self/statm").is_file():
        pytest.skip("reads the resident set size from /proc")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        # glibc: every block under 32 MiB comes from the heap, which is never trimmed.
        "MALLOC_MMAP_THRESHOLD_": str(32 * MB),
        "MALLOC_TRIM_THRESHOLD_": str(4096 * MB),
    }
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _rise(values: list[int], start: int) -> float:
    """MB from ``values[start]`` to the last value."""
    return (values[-1] - values[start]) / MB


def test_repeated_fits_do_not_grow_memory(memory: Any) -> None:
    """Ten fits (and predictions) of a fresh tiny CNN in one process, as in a long search or
    repeated cross-validation: after the first few, the RSS and its peak stay flat."""
    rss, peak = memory["fits"]["rss"], memory["fits"]["peak"]
    assert len(rss) == 10
    assert _rise(rss, 2) < FIT_GROWTH_BOUND, f"RSS grew {_rise(rss, 2):.1f} MB, fit 3 to 10"
    assert _rise(peak, 2) < FIT_GROWTH_BOUND, f"peak grew {_rise(peak, 2):.1f} MB, fit 3 to 10"


def test_more_epochs_do_not_raise_peak_memory(memory: Any) -> None:
    """Epochs 3 to 12 of a fit raise its peak RSS by a few MB at most over what epochs 1 and 2
    needed, and from epoch 6 on the RSS after each epoch stays flat."""
    rss, peak = memory["epochs"]["rss"], memory["epochs"]["peak"]
    assert len(rss) == 12
    assert _rise(peak, 1) < EPOCH_GROWTH_BOUND, f"peak rose {_rise(peak, 1):.1f} MB after epoch 2"
    assert _rise(rss, 5) < EPOCH_GROWTH_BOUND, f"RSS rose {_rise(rss, 5):.1f} MB after epoch 6"


def test_the_memory_probes_see_a_leak(memory: Any) -> None:
    """Controls, in the same process: keeping every fitted model, or a copy of the weights at
    every epoch end, breaks the bounds above."""
    kept, leak = memory["fits_kept"], memory["epochs_leak"]
    assert _rise(kept["rss"], 1) > FIT_GROWTH_BOUND, _rise(kept["rss"], 1)  # 3 more models
    assert _rise(leak["rss"], 5) > EPOCH_GROWTH_BOUND, _rise(leak["rss"], 5)
    if memory["peak_resets"]:  # else the peak is the process's, set by the earlier phases
        assert _rise(leak["peak"], 1) > EPOCH_GROWTH_BOUND, _rise(leak["peak"], 1)


# -- (b) what a fitted model holds ---------------------------------------------------------------
_SKIP = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
)


def _reachable_arrays(root: Any, limit: int = 500_000) -> list[Any]:
    """Every NumPy array and torch tensor reachable from ``root`` through its attributes,
    containers and callbacks (not through classes, modules or functions)."""
    seen: set[int] = set()
    stack, found = [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        assert len(seen) < limit, "walked too far: the search left the model"
        if isinstance(obj, torch.Tensor):
            found.append(obj)
            continue
        if isinstance(obj, np.ndarray):
            found.append(obj)
            if obj.base is not None:
                stack.append(obj.base)
            continue
        stack.extend(gc.get_referents(obj))
    return found


def _tile_like(arrays: list[Any], tile: tuple[int, int]) -> list[tuple[int, ...]]:
    """Shapes of the arrays holding tiles (``(..., h, w, 3)`` or ``(..., 3, h, w)``)."""
    h, w = tile
    return [
        tuple(a.shape)
        for a in arrays
        if a.ndim >= 3 and (tuple(a.shape[-3:]) in {(h, w, 3), (3, h, w)})
    ]


def test_a_fitted_model_holds_no_training_data(data: Any) -> None:
    """No attribute, callback or history entry keeps the training tiles (as uint8, as float
    tensors or as a batch), and no tensor still carries an autograd graph (a loss kept in the
    history would hold every activation of its batch)."""
    bags, y, _ = tiny_bags(16)
    clf = tiny_hybrid().fit(bags, y)
    clf.predict_proba(bags)
    tile = bags.shape[2:4]

    # Control: a batch of tiles hidden in a callback is found.
    callback = dict(clf.callbacks_)["valid_acc"]
    callback.planted_ = torch.zeros((2, 3, *tile))
    assert _tile_like(_reachable_arrays(clf), tile) == [(2, 3, *tile)]
    del callback.planted_

    arrays = _reachable_arrays(clf)
    assert _tile_like(arrays, tile) == []
    assert not [tuple(a.shape) for a in arrays if isinstance(a, torch.Tensor) and a.grad_fn]
    # Nor a view of the input (a view's .base would keep it alive).
    ref = weakref.ref(bags)
    del bags
    gc.collect()
    assert ref() is None, "the fitted model keeps the training array alive"
    assert clf.predict_proba(data[0]).shape == (16, 2)


def _state_bytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in model.module_.state_dict().values())


def test_a_pickled_model_holds_its_weights_once(data: Any) -> None:
    """The pickle holds the weights and Adam's two moments (3x the weights), not the LR
    scheduler (which references the optimizer, hence every weight, a second time) and no
    tensor in a callback (a CUDA tensor there would not load on a CPU-only machine)."""
    bags, y, _ = data
    clf = tiny_cnn().fit(bags, y)
    weights = _state_bytes(clf)
    size = len(pickle.dumps(clf))
    assert size < 3.3 * weights, f"pickle {size / MB:.1f} MB for {weights / MB:.1f} MB of weights"
    # Control: the torch scheduler alone would add at least the weights once more.
    scheduler = dict(clf.callbacks_)["lr_scheduler"].lr_scheduler_
    assert len(pickle.dumps(scheduler)) > weights
    restored = pickle.loads(pickle.dumps(clf))
    assert dict(restored.callbacks_)["lr_scheduler"].lr_scheduler_ is None
    for name, callback in restored.callbacks_:
        assert not _reachable_arrays(vars(callback)), name
    np.testing.assert_allclose(restored.predict_proba(bags), clf.predict_proba(bags), atol=1e-6)


#: Weak references to every module, optimizer and first weight tensor trained by a _Spy.
_TRAINED: list[tuple[weakref.ref, weakref.ref, weakref.ref]] = []


class _Spy(Callback):
    """Records weak references to what each fit trained (module-level, so clones share it)."""

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        first = next(net.module_.parameters())
        _TRAINED.append((weakref.ref(net.module_), weakref.ref(net.optimizer_), weakref.ref(first)))


def test_refits_and_grid_search_release_earlier_models(data: Any) -> None:
    """A second fit of the same estimator, and every candidate and fold of a GridSearchCV,
    leave no module, optimizer or weight tensor behind: only the model in use survives."""
    bags, y, patients = data
    _TRAINED.clear()
    clf = tiny_hybrid(max_epochs=1, callbacks=[("spy", _Spy())])
    clf.fit(bags, y)
    clf.fit(bags, y)
    assert len(_TRAINED) == 2
    first_module, first_optimizer, first_weight = _TRAINED[0]
    gc.collect()
    assert first_module() is None and first_optimizer() is None and first_weight() is None
    assert _TRAINED[1][0]() is clf.module_

    _TRAINED.clear()
    search = GridSearchCV(
        tiny_cnn(max_epochs=1, callbacks=[("spy", _Spy())]),
        {"aggregation": ["mean", "max"]},
        cv=StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=0),
        error_score="raise",
    ).fit(bags, y, groups=patients)
    assert len(_TRAINED) == 5  # 2 candidates x 2 folds + the refit
    survivors = [entry for entry in _TRAINED if entry[0]() is not None or entry[2]() is not None]
    assert len(survivors) == 1, f"{len(survivors)} of 5 trained models still alive"
    assert survivors[0][0]() is search.best_estimator_.module_
    assert all(optimizer() is None for _, optimizer, _ in _TRAINED[:4])


# -- (c) a whole magnification: no copy of the tiles, and tiles that live on disk ----------------
class _DatasetSpy(Callback):
    """Keeps the arrays behind the training and validation datasets of the first epoch."""

    def on_epoch_begin(
        self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any
    ) -> None:
        if not hasattr(self, "seen_"):
            self.seen_ = [(d.dataset.X, d.indices) for d in (dataset_train, dataset_valid)]


def _is_file_backed(array: np.ndarray) -> bool:
    """Whether ``array``'s memory is a file mapping (its chain of bases ends in an mmap)."""
    import mmap

    while array is not None:
        if isinstance(array, mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


def test_training_and_validation_read_the_bag_array_itself(data: Any) -> None:
    """fit flattens the bags to a view and splits off the validation set by index: the tiles
    are never copied (a whole BreakHis magnification is 2.7 GB of tiles; a copy in the split
    or the dataset would make the peak 2x that, see docs/performance.md)."""
    bags, y, patients = data
    spy = _DatasetSpy()
    tiny_cnn(max_epochs=1, valid_size=0.25, callbacks=[("spy", spy)]).fit(bags, y, groups=patients)
    (train_x, train_rows), (valid_x, valid_rows) = spy.seen_
    for x in (train_x, valid_x):
        assert np.shares_memory(x, bags), "the training data is a copy of the bags"
        assert x.shape == (bags.shape[0] * bags.shape[1], *bags.shape[2:])
    assert len(train_rows) + len(valid_rows) == bags.shape[0] * bags.shape[1]
    # Control: the probe sees a copy.
    assert not np.shares_memory(np.array(bags).reshape(train_x.shape), bags)


def test_a_batch_is_a_view_of_the_tiles_unless_they_are_read_only(tmp_path: Path) -> None:
    from skhybrid.estimators._data import ArrayDataset

    tiles = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    batch, _ = ArrayDataset(tiles).__getitems__(range(2, 6))  # consecutive rows: prediction
    assert np.shares_memory(batch.numpy(), tiles)
    np.save(tmp_path / "tiles.npy", tiles)
    mapped = np.load(tmp_path / "tiles.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps read-only memory
        batch, _ = ArrayDataset(mapped).__getitems__(range(2, 6))
    assert not np.shares_memory(batch.numpy(), mapped) and batch.numpy().flags.writeable
    np.testing.assert_array_equal(batch.numpy(), tiles[2:6])


def test_tile_to_memmap_writes_the_tiler_output_to_disk(tmp_path: Path) -> None:
    from PIL import Image

    from skhybrid.tiling import SubImageTiler, tile_to_memmap

    images = np.random.default_rng(1).integers(0, 256, (5, 30, 45, 3), dtype=np.uint8)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    params = {"grid": (2, 3), "tile_size": (8, 8), "batch_size": 2}  # 3 batches
    tiler = SubImageTiler(**params)
    bags = tile_to_memmap(paths, tmp_path / "bags.npy", tiler)
    expected = SubImageTiler(grid=(2, 3), tile_size=(8, 8)).fit_transform(images)
    assert isinstance(bags, np.memmap) and bags.shape == (5, 6, 8, 8, 3)
    np.testing.assert_array_equal(bags, expected)
    np.testing.assert_array_equal(np.load(tmp_path / "bags.npy"), expected)
    # An array of file names, as load_breakhis(load_images=False).filenames gives them.
    np.testing.assert_array_equal(
        tile_to_memmap(np.array(paths), tmp_path / "names.npy", SubImageTiler(**params)), expected
    )
    # Native tile size (no resize): the shape comes from the images.
    native = tile_to_memmap(images, tmp_path / "native.npy", SubImageTiler(grid=(2, 3)))
    np.testing.assert_array_equal(native, SubImageTiler(grid=(2, 3)).fit_transform(images))
    # Chunks of a larger array: out= takes a slice along the first axis.
    out = np.zeros((5, 6, 8, 8, 3), np.uint8)
    tiler.transform(paths[:3], out=out[:3])
    tiler.transform(paths[3:], out=out[3:])
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("out", "match"),
    [
        (np.zeros((2, 6, 8, 8, 3), np.uint8), "shape"),  # 2 bags for 3 images
        (np.zeros((3, 6, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((3, 6, 8, 8, 4), np.uint8), "shape"),
        (np.zeros((3, 6, 8, 9, 3), np.uint8), "bags of shape"),  # wrong tile size
        (np.zeros((3, 6, 8, 16, 3), np.uint8)[:, :, :, ::2], "C-contiguous"),
    ],
)
def test_transform_out_rejects_buffers_it_cannot_fill(out: np.ndarray, match: str) -> None:
    from skhybrid.tiling import SubImageTiler

    images = np.zeros((3, 30, 45, 3), np.uint8)
    tiler = SubImageTiler(grid=(2, 3), tile_size=(8, 8)).fit(images)
    with pytest.raises(ValueError, match=match):
        tiler.transform(images, out=out)
    read_only = np.zeros((3, 6, 8, 8, 3), np.uint8)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        tiler.transform(images, out=read_only)


def test_training_from_a_memmap_reads_the_file(tmp_path: Path, data: Any) -> None:
    """Bags on disk (np.load(..., mmap_mode="r")) train and predict like bags in memory,
    without a warning, and the training dataset is the file mapping, not a loaded copy."""
    bags, y, patients = data
    np.save(tmp_path / "bags.npy", bags)
    mapped = np.load(tmp_path / "bags.npy", mmap_mode="r")
    spy = _DatasetSpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        on_disk = tiny_cnn(max_epochs=1, callbacks=[("spy", spy)]).fit(mapped, y, groups=patients)
        proba = on_disk.predict_proba(mapped)
    assert all(_is_file_backed(x) for x, _ in spy.seen_)
    assert not _is_file_backed(np.array(mapped))  # control: a loaded copy is not
    in_memory = tiny_cnn(max_epochs=1).fit(bags, y, groups=patients)
    np.testing.assert_allclose(proba, in_memory.predict_proba(bags), atol=1e-6)


def test_tiling_from_paths_holds_one_batch_of_decoded_images(tmp_path: Path) -> None:
    """Files are decoded straight into one batch array: the temporaries of transform are one
    batch of images plus the decoding of one image (Pillow's ``tobytes`` holds ~3 images'
    worth), not a list of decoded images and its stacked copy (2 batches), nor the previous
    batch still alive while the next one decodes (2 batches)."""
    import tracemalloc  # numpy reports its allocations to tracemalloc

    from PIL import Image

    from skhybrid.tiling import SubImageTiler

    rng = np.random.default_rng(2)
    paths = []
    for i in range(24):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(paths[-1])
    tiler = SubImageTiler(grid=(3, 3), batch_size=12).fit(paths)  # two batches
    batch = 12 * 60 * 90 * 3
    tracemalloc.start()
    try:
        bags = tiler.transform(paths)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    temporaries = peak - bags.nbytes
    assert batch <= temporaries < 1.6 * batch, temporaries / batch
