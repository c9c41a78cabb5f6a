"""Training accuracy per epoch, and plot_training_history (the paper's Figures 11-12)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def fitted():
    """A resnet18 CNN on an easy task: dark tiles are benign, bright ones malignant."""
    from skhybrid import CNNClassifier

    rng = np.random.default_rng(0)
    y = np.array(["benign", "malignant"] * 24)
    level = np.where(y == "malignant", 200, 50)[:, None, None, None]
    X = np.clip(level + rng.normal(0, 20, (48, 16, 16, 3)), 0, 255).astype(np.uint8)
    clf = CNNClassifier(
        backbone="resnet18",
        weights=None,
        max_epochs=6,
        lr=3e-3,
        batch_size=16,
        device="cpu",
        random_state=0,
    )
    return clf.fit(X, y)


def test_train_acc_is_recorded_and_rises(fitted) -> None:
    train_acc = np.asarray(fitted.history_[:, "train_acc"], dtype=float)
    assert len(train_acc) == 6 and np.all((train_acc >= 0) & (train_acc <= 1))
    # Learnt: the last epochs are better than the first one, and far above chance.
    assert train_acc[0] < 0.8 <= train_acc[-1]
    assert "train_acc" in dict(fitted.callbacks_)


def test_plot_training_history_draws_both_families(fitted, tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from skhybrid.metrics import plot_training_history

    path = tmp_path / "history.png"
    fig, axes = plot_training_history(fitted, path=path, title="resnet18")
    assert isinstance(fig, Figure) and len(axes) == 2 and path.stat().st_size > 5000
    loss_ax, acc_ax = axes
    assert [line.get_label() for line in loss_ax.lines][:2] == ["training", "validation"]
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), fitted.history_[:, "train_loss"])
    np.testing.assert_allclose(acc_ax.lines[0].get_ydata(), fitted.history_[:, "train_acc"])
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), fitted.history_[:, "valid_acc"])
    best = fitted.history_[-1, "best_epoch_restored"]
    assert f"best epoch ({best})" in [line.get_label() for line in acc_ax.lines]
    assert acc_ax.get_ylabel() == "accuracy" and loss_ax.get_xlabel() == "epoch"
    assert "matplotlib.pyplot" not in sys.modules  # drawn on a bare Figure


def test_plot_training_history_marks_phase_change_and_best_epoch() -> None:
    from matplotlib.figure import Figure

    from skhybrid.metrics import plot_training_history

    history = [
        {"epoch": 1, "train_loss": 0.9, "valid_loss": 0.8, "backbone_frozen": True},
        {"epoch": 2, "train_loss": 0.7, "valid_loss": 0.5, "backbone_frozen": True},
        {"epoch": 3, "train_loss": 0.4, "valid_loss": 0.3, "backbone_frozen": False},
        {"epoch": 4, "train_loss": 0.2, "valid_loss": 0.4, "backbone_frozen": False},
    ]
    ax = Figure().add_subplot()
    fig, (drawn,) = plot_training_history(history, metrics=("loss",), ax=ax)
    assert drawn is ax and fig is ax.figure
    marks = {line.get_label(): line.get_xdata()[0] for line in ax.lines[2:]}
    # The lowest valid_loss (no best_epoch_restored recorded) and the end of phase 1.
    assert marks == {"CNN unfrozen": 2.5, "best epoch (3)": 3}
    # The restored epoch wins over the minimum when recorded.
    history[-1]["best_epoch_restored"] = 4
    _, (axis,) = plot_training_history(history, metrics="loss")
    assert "best epoch (4)" in [line.get_label() for line in axis.lines]


def test_plot_training_history_errors() -> None:
    from skhybrid.metrics import plot_training_history

    rows = [{"epoch": 1, "train_loss": 0.5}]
    with pytest.raises(ValueError, match="metrics must be"):
        plot_training_history(rows, metrics=("f1",))
    with pytest.raises(ValueError, match="none of"):
        plot_training_history(rows, metrics=("acc",))
    with pytest.raises(ValueError, match="empty"):
        plot_training_history([])
    with pytest.raises(ValueError, match="ax has 1 axes for 2 metrics"):
        from matplotlib.figure import Figure

        plot_training_history(rows, ax=Figure().add_subplot())
