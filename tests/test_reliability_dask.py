"""Scaling out: GridSearchCV over backbones and cross_validate over patient folds on a
``dask.distributed`` cluster (``joblib.parallel_backend("dask")``) equal the serial run.

The default run keeps one small search (two backbones x two patient folds, one epoch);
``-m slow`` adds the hybrid model, more folds and the refit. See docs/reliability.md.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, cross_validate

sys.path.insert(0, str(Path(__file__).parent))
from _reliability import tiny_bags, tiny_cnn, tiny_hybrid, tiny_relabeler

from skhybrid import get_scorers

distributed = pytest.importorskip("distributed")
from distributed import get_task_stream  # noqa: E402

#: Wall-clock seconds of the last serial and dask runs, for the report (printed with -s).
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two single-threaded worker processes, as on a small real cluster."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        # One torch thread per worker: two workers on two cores must not oversubscribe.
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    with Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """The serial runs use one torch thread, like each worker: CPU kernels (bf16 ones most)
    sum in an order that depends on the thread count, so only equal settings compare equal."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tiny_bags(16)


def _timed(name: str, function: Any) -> Any:
    start = time.perf_counter()
    result = function()
    TIMINGS[name] = time.perf_counter() - start
    print(f"{name}: {TIMINGS[name]:.1f} s")
    return result


def _folds(n_splits: int) -> StratifiedGroupKFold:
    """Patient folds with both classes in every training fold (a plain GroupKFold balances
    fold sizes and can put all patients of one class together on tiny data)."""
    return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=0)


def _search(estimator: Any, grid: dict[str, list[Any]], n_splits: int, **kwargs: Any) -> Any:
    return GridSearchCV(
        estimator,
        grid,
        cv=_folds(n_splits),
        scoring="roc_auc",
        n_jobs=-1,
        error_score="raise",
        **kwargs,
    )


def _assert_same_results(serial: Any, dask: Any) -> None:
    for key, value in serial.cv_results_.items():
        if key.endswith("_time"):
            continue
        assert np.array_equal(np.asarray(value), np.asarray(dask.cv_results_[key])), key


def test_grid_search_over_backbones_on_dask_equals_serial(client: Any, data: Any) -> None:
    bags, y, patients = data
    grid = {"backbone": ["mobilenet_v3_small", "resnet18"]}
    estimator = tiny_cnn(max_epochs=1)
    serial = _timed(
        "grid serial",
        lambda: _search(estimator, grid, 2, refit=False).set_params(n_jobs=1)
        .fit(bags, y, groups=patients),
    )  # fmt: skip
    with joblib.parallel_backend("dask"), get_task_stream(client) as stream:
        dask = _timed(
            "grid dask",
            lambda: _search(estimator, grid, 2, refit=False).fit(bags, y, groups=patients),
        )
    _assert_same_results(serial, dask)
    # The fits really ran on the workers, on both of them.
    workers = {task["worker"] for task in stream.data}
    assert len(stream.data) >= 4 and len(workers) == 2, workers


def test_cross_validate_patient_folds_on_dask_equals_serial(client: Any, data: Any) -> None:
    """The relabeler (cheap features) scored with skhybrid's scorers over patient folds."""
    bags, y, patients = data
    kwargs = {"cv": _folds(2), "groups": patients, "scoring": get_scorers()}
    serial = cross_validate(tiny_relabeler(n_rounds=1, cv=2), bags, y, n_jobs=1, **kwargs)
    with joblib.parallel_backend("dask"):
        dask = cross_validate(tiny_relabeler(n_rounds=1, cv=2), bags, y, n_jobs=-1, **kwargs)
    for key in serial:
        if key.startswith("test_"):
            np.testing.assert_array_equal(serial[key], dask[key], err_msg=key)


@pytest.mark.slow
def test_hybrid_search_and_cross_validation_on_dask_equal_serial(client: Any, data: Any) -> None:
    bags, y, patients = data
    grid = {"backbone": ["mobilenet_v3_small", "resnet18"], "fusion": ["attention", "concat"]}
    estimator = tiny_hybrid(max_epochs=2)
    serial = _timed(
        "hybrid grid serial",
        lambda: _search(estimator, grid, 2).set_params(n_jobs=1).fit(bags, y, groups=patients),
    )
    with joblib.parallel_backend("dask"):
        dask = _timed(
            "hybrid grid dask", lambda: _search(estimator, grid, 2).fit(bags, y, groups=patients)
        )
    _assert_same_results(serial, dask)
    assert np.array_equal(
        serial.best_estimator_.predict_proba(bags), dask.best_estimator_.predict_proba(bags)
    )
    kwargs = {"cv": _folds(2), "groups": patients, "scoring": get_scorers()}
    cv_serial = cross_validate(tiny_cnn(), bags, y, n_jobs=1, **kwargs)
    with joblib.parallel_backend("dask"):
        cv_dask = cross_validate(tiny_cnn(), bags, y, n_jobs=-1, **kwargs)
    for key in cv_serial:
        if key.startswith("test_"):
            np.testing.assert_array_equal(cv_serial[key], cv_dask[key], err_msg=key)
