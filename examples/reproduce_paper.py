"""Reproduce the paper's experiments: its Tables 4-9 and Figures 6-12, under both protocols.

For each magnification, each backbone (VGG19, GoogLeNet, ResNet101), CNN vs hybrid CNN-LSTM,
with and without self-learning, under the paper's random split of tiles (leaky) and an honest
patient-wise split. Writes the paper's tables, numbered as in the paper, in Markdown (``.md``)
and all of them in ``tables.json``:

- ``table4_self_learning.md``: tile class counts per self-learning round, per magnification;
- ``table5_cnn.md`` / ``table6_hybrid.md``: accuracy, sensitivity, specificity, precision and
  F1 of the CNN / hybrid rows (backbone x magnification), in the paper's convention (averaged
  over the two classes) and in skhybrid's (malignant positive, with AUC), both labelled;
- ``table7_cnn_confusion.md`` / ``table8_hybrid_confusion.md``: TP, FP, FN, TN with the
  paper's positive class, benign;
- ``table9_comparison.md``: our accuracies beside the paper's published numbers and the other
  work it compares with (:data:`PAPER_RESULTS`);
- ``figure6_cnn_accuracy.png``, ``figure7_hybrid_accuracy.png``: accuracy per magnification;
  ``figure9_roc_<mag>.png``, ``figure10_precision_recall_<mag>.png``;
  ``figure11_training_loss_<mag>.png``, ``figure12_training_accuracy_<mag>.png``;
- ``metrics.csv``: one row per training with both conventions and the counts;
  ``results.json``: everything, per training.

The paper tests on 20 % of the tiles (its Tables 7-8 total 20 % of its Table 3); so does the
random-tile protocol here by default, and the patient protocol on a quarter of each class's
patients; ``--test-size`` sets both.

Usage::

    # BreakHis, full runs (a GPU and ImageNet weights in torch's cache)
    python examples/reproduce_paper.py --data-dir BreaKHis_v1 --weights imagenet --out paper

    # synthetic data, about a minute on a CPU
    python examples/reproduce_paper.py --quick --out paper-quick

Without ``--data-dir`` the synthetic data set stands in for BreakHis, one synthetic set per
"magnification" (a different seed each). ``--quick`` only changes the defaults of the size
options (``--magnifications``, ``--backbones``, ``--tile-size``, ``--epochs``, ``--batch-size``,
``--n-images``, ``--image-size``); any of them given on the command line wins. Tile labels are
corrected by a fast colour/texture proposer unless ``--relabel-with model`` asks for the
network itself, as in the paper. See docs/reproducing.md for why the two protocols differ and
how to read each table and figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skhybrid import SubImageTiler, load_breakhis, make_histology
from skhybrid.class_roles import roles_of
from skhybrid.cli import held_out_fraction
from skhybrid.evaluation import paper_convention_report
from skhybrid.metrics import plot_precision_recall_curve, plot_roc_curve, plot_training_history
from skhybrid.workflow import (
    DEFAULT_TEST_SIZE,
    classifier_defaults,
    make_classifier,
    run_experiment,
)

PAPER_BACKBONES = ("vgg19", "googlenet", "resnet101")
MAGNIFICATIONS = ("40X", "100X", "200X", "400X")
#: The paper's numbering: (metrics table, confusion table, accuracy figure) per model kind.
TABLES = {"cnn": (5, 7, 6), "hybrid": (6, 8, 7)}
KIND_TITLES = {"cnn": "CNN", "hybrid": "hybrid CNN-LSTM"}
PROTOCOL_TITLES = {
    "random-tile": "Random split of tiles (the paper's protocol; LEAKY)",
    "patient": "Patient-wise split (honest)",
}


#: Sizes that ``--quick`` changes. Their command-line defaults are None and are filled from one
#: of these presets, so an option given on the command line always wins, with or without --quick.
FULL_PRESET: dict[str, Any] = {
    "magnifications": list(MAGNIFICATIONS),
    "backbones": list(PAPER_BACKBONES),
    "tile_size": 224,
    "epochs": 100,
    "batch_size": 128,
    "n_images": 120,
    "image_size": (230, 350),
}
QUICK_PRESET: dict[str, Any] = {
    "magnifications": ["40X"],
    "backbones": ["resnet18"],
    "tile_size": 32,
    "epochs": 2,
    "batch_size": 32,
    "n_images": 48,
    "image_size": (96, 144),
}
#: Phase-1 epochs (CNN frozen) with pretrained weights: the estimators' default, as
#: ``skhybrid train``; 0 from scratch.
PRETRAINED_FREEZE_EPOCHS = classifier_defaults()["freeze_epochs"]


def _preset_help(text: str, key: str) -> str:
    def show(value: Any) -> str:
        return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    return f"{text} (default: {show(FULL_PRESET[key])}; with --quick: {show(QUICK_PRESET[key])})"


def normalise_magnification(value: str) -> str | None:
    """``40``, ``40x``, ``40X`` -> ``"40X"``; None for anything that is not a BreakHis one."""
    text = value.strip().upper()
    name = text if text.endswith("X") else f"{text}X"
    return name if name in MAGNIFICATIONS else None


def held_out_share(args: argparse.Namespace, protocol: str) -> float:
    """The test share of a protocol: ``--test-size`` or the protocol's default."""
    return args.test_size if args.test_size is not None else DEFAULT_TEST_SIZE[protocol]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="BreakHis folder")
    parser.add_argument(
        "--magnifications",
        nargs="+",
        default=None,
        help=_preset_help(
            "40X, 100X, 200X or 400X; 40, 40x and 40X are the same", "magnifications"
        ),
    )
    parser.add_argument(
        "--backbones", nargs="+", default=None, help=_preset_help("backbone names", "backbones")
    )
    parser.add_argument("--models", nargs="+", choices=("cnn", "hybrid"), default=["cnn", "hybrid"])
    parser.add_argument(
        "--self-learning",
        nargs="+",
        type=int,
        default=[0, 4],
        help="self-learning rounds to compare (0 = without)",
    )
    parser.add_argument(
        "--relabel-with",
        choices=("features", "model"),
        default="features",
        help="tile classifier proposing the label corrections: 'features' (default), the fast "
        "proposer (colour/texture features + logistic regression, seconds per round); 'model', "
        "the network itself as in the paper (one training per fold and round, slow)",
    )
    parser.add_argument(
        "--protocols", nargs="+", choices=tuple(PROTOCOL_TITLES), default=["random-tile", "patient"]
    )
    parser.add_argument(
        "--test-size",
        type=held_out_fraction,
        default=None,
        metavar="F",
        help="share held out, in (0, 0.5]: of the tiles (random-tile) and of each class's "
        f"patients (patient) (default: {DEFAULT_TEST_SIZE['random-tile']} random-tile, as the "
        f"paper; {DEFAULT_TEST_SIZE['patient']} patient)",
    )
    parser.add_argument("--weights", default="none", help="imagenet, none or a state-dict path")
    parser.add_argument(
        "--tile-size", type=int, default=None, help=_preset_help("tile side", "tile_size")
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help=_preset_help("max epochs", "epochs")
    )
    parser.add_argument(
        "--freeze-epochs",
        type=int,
        default=None,
        help=f"phase-1 epochs with the CNN frozen (default: {PRETRAINED_FREEZE_EPOCHS} with "
        "pretrained weights, 0 without, as `skhybrid train`)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help=_preset_help("batch size", "batch_size")
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam learning rate (default: 1e-4 with pretrained weights, 1e-3 without)",
    )
    parser.add_argument(
        "--n-images",
        type=int,
        default=None,
        help=_preset_help("synthetic images per set", "n_images"),
    )
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help=_preset_help("synthetic image size", "image_size"),
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller defaults for a CPU (small synthetic data, resnet18, 40X only); options "
        "given on the command line still apply",
    )
    parser.add_argument("--out", type=Path, default=Path("paper-tables"))
    args = parser.parse_args(argv)
    for key in ("models", "self_learning", "protocols"):
        setattr(args, key, list(dict.fromkeys(getattr(args, key))))
    for key, value in (QUICK_PRESET if args.quick else FULL_PRESET).items():
        if getattr(args, key) is None:
            setattr(args, key, list(value) if isinstance(value, list) else value)
    magnifications = []
    for value in args.magnifications:
        name = normalise_magnification(value)
        if name is None:
            parser.exit(
                2,
                f"{parser.prog}: error: --magnifications: invalid magnification {value!r} "
                "(use 40X, 100X, 200X or 400X; 40 and 40x also work)\n",
            )
        if name not in magnifications:
            magnifications.append(name)
    args.magnifications = magnifications
    args.backbones = list(dict.fromkeys(args.backbones))
    args.image_size = tuple(args.image_size)
    return args


def load_set(args: argparse.Namespace, magnification: str, index: int) -> dict[str, Any]:
    """Images, string labels, patients and (synthetic only) ground-truth tile labels."""
    if args.data_dir is not None:
        data = load_breakhis(args.data_dir, magnification=magnification)
        names = np.asarray(data.target_names)
        return {
            "X": data.images,
            "y": names[data.target],
            "patients": data.patient,
            "tile_truth": None,
            "source": f"BreakHis {magnification}",
        }
    data = make_histology(
        n_images=args.n_images, image_size=args.image_size, random_state=args.seed + index
    )
    names = np.asarray(data.target_names)
    return {
        "X": data.images,
        "y": names[data.target],
        "patients": data.patient,
        "tile_truth": names[data.tile_target],
        "source": f"synthetic set {index} standing in for {magnification}",
    }


def classifier_params(args: argparse.Namespace, backbone: str) -> dict[str, Any]:
    weights = None if args.weights.lower() == "none" else args.weights
    pretrained = weights is not None
    return {
        "backbone": backbone,
        "weights": weights,
        "max_epochs": args.epochs,
        "freeze_epochs": args.freeze_epochs
        if args.freeze_epochs is not None
        else (PRETRAINED_FREEZE_EPOCHS if pretrained else 0),
        "lr": args.lr if args.lr is not None else (1e-4 if pretrained else 1e-3),
        "batch_size": args.batch_size,
        "device": args.device,
        "random_state": args.seed,
        "verbose": 0,
    }


def row_name(backbone: str, model: str, rounds: int, *, show_rounds: bool = False) -> str:
    """``resnet101 CNN-LSTM + self-learning`` (with ``(N rounds)`` when several are compared)."""
    kind = "CNN-LSTM" if model == "hybrid" else "CNN"
    if not rounds:
        return f"{backbone} {kind}"
    suffix = f" ({rounds} round{'s' if rounds != 1 else ''})" if show_rounds else ""
    return f"{backbone} {kind} + self-learning{suffix}"


def settings_line(args: argparse.Namespace) -> str:
    """The sizes in effect after the presets, printed first so a run documents itself."""
    data = (
        f"BreakHis {args.data_dir}"
        if args.data_dir is not None
        else f"synthetic, {args.n_images} images of {args.image_size[0]}x{args.image_size[1]}"
    )
    return (
        f"{'quick' if args.quick else 'full'} settings: {data}; magnifications "
        f"{' '.join(args.magnifications)}; backbones {' '.join(args.backbones)}; tiles "
        f"{args.tile_size}x{args.tile_size}; epochs {args.epochs}; batch {args.batch_size}; "
        f"relabel with {args.relabel_with}; test size "
        + ", ".join(f"{held_out_share(args, p)} ({p})" for p in args.protocols)
    )


#: The paper's published numbers that this script can attribute, for Tables 6, 8 and 9.
#: ``paper`` rows are the paper's own results; ``related`` rows are other work as the paper
#: compares with it, quoted, not checked against the original publications. A value not
#: known for sure is ``None`` and printed as "not quoted" rather than invented.
PAPER_RESULTS: tuple[dict[str, Any], ...] = (
    {
        "kind": "paper",
        "model": "hybrid",
        "backbone": "resnet101",
        "method": "ResNet101 + LSTM (the paper's hybrid)",
        "magnification": "100X",
        "task": "binary",
        "protocol": "random split of tiles (leaky), 20 % test",
        "accuracy": 99.76,
        # Table 6 prints the same value for sensitivity and specificity (class-averaged).
        "sensitivity": 99.76,
        "specificity": 99.76,
        "precision": None,
        "f1": None,
        # Table 8, benign positive; TP + FP + FN + TN = 3745 test tiles.
        "confusion": {"TP": 1623, "FP": 4, "FN": 5, "TN": 2113},
        "source": "the paper, Tables 6 and 8",
    },
    {
        "kind": "related",
        "method": "CNN-LSTM",
        "magnification": None,
        "task": None,
        "protocol": None,
        "accuracy": "92.5",
        "source": "as compared in the paper (Table 9); magnification, task and split not "
        "checked here",
    },
    {
        "kind": "related",
        "method": "BHCNet",
        "magnification": None,
        "task": "8-class",
        "protocol": "random splits",
        "accuracy": "90.7-93.8",
        "source": "as compared in the paper (Table 9); not checked against the BHCNet paper",
    },
)
NOT_QUOTED = "not quoted"

#: skhybrid's own columns (malignant positive) and the paper's (class-averaged).
OURS_COLUMNS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")
PAPER_COLUMNS = ("accuracy", "sensitivity", "specificity", "precision", "f1")
HEADERS = {
    "accuracy": "Accuracy (%)",
    "sensitivity": "Sensitivity (%)",
    "specificity": "Specificity (%)",
    "precision": "Precision (%)",
    "f1": "F1 (%)",
    "auc": "AUC (%)",
}


@dataclass
class Row:
    """One training: what the tables and figures of one row need (no model kept)."""

    magnification: str
    protocol: str
    backbone: str
    model: str  # "cnn" or "hybrid"
    rounds: int
    name: str
    level: str
    report: Any  # skhybrid.metrics.BinaryReport, malignant positive
    negative: Any
    positive: Any
    curve: tuple[np.ndarray, np.ndarray]  # (y_true, malignant scores)
    history: list[dict[str, Any]] = field(repr=False)
    source: str = ""

    @property
    def paper(self) -> dict[str, float]:
        """The paper's convention (class-size-weighted averages over the two classes), in %."""
        return paper_convention(self.report, self.negative, self.positive)

    @property
    def confusion(self) -> dict[str, int]:
        """TP, FP, FN, TN with the paper's positive class, benign (the negative one here)."""
        return paper_confusion(self.report)


def paper_confusion(report: Any) -> dict[str, int]:
    """Swap the roles: the paper's TP are benign tiles called benign (skhybrid's TN), ..."""
    return {"TP": report.tn, "FP": report.fn, "FN": report.fp, "TN": report.tp}


def paper_convention(report: Any, negative: Any, positive: Any) -> dict[str, float]:
    """``paper_convention_report`` of the predictions a report's confusion counts describe.

    Every figure of it depends on the confusion matrix only, so the labels are rebuilt from
    the counts (skhybrid's: malignant positive); the benign class is the paper's positive.
    """
    y_true = [positive] * report.tp + [negative] * report.fp
    y_true += [positive] * report.fn + [negative] * report.tn
    y_pred = [positive] * (report.tp + report.fp) + [negative] * (report.fn + report.tn)
    try:
        values = paper_convention_report(y_true, y_pred, positive=negative)
    except ValueError:  # one class only in truth and predictions: no average over two
        values = dict.fromkeys(PAPER_COLUMNS, math.nan)
    return {key: 100 * float(value) for key, value in values.items()}


def percent(value: Any) -> str:
    if value is None:
        return NOT_QUOTED
    if isinstance(value, str):
        return value
    return "nan" if math.isnan(value) else f"{value:.2f}"


def markdown_table(headers: list[str], rows: list[list[Any]], *, text_columns: int = 2) -> str:
    """A Markdown table; the first ``text_columns`` columns left-aligned, numbers right."""
    aligns = ["---" if i < text_columns else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def data_line(rows: list[Row]) -> str:
    """``Data: 40X: BreakHis 40X.``: what each magnification's rows were measured on."""
    sources = {row.magnification: row.source for row in rows}
    return "Data: " + "; ".join(f"{mag}: {src}" for mag, src in sources.items()) + "."


def section_rows(rows: list[Row], kind: str, protocol: str) -> list[Row]:
    """A model kind's rows under one protocol, ordered as the paper: backbone, magnification."""
    chosen = [row for row in rows if row.model == kind and row.protocol == protocol]
    order = {name: i for i, name in enumerate(dict.fromkeys(row.name for row in chosen))}
    return sorted(
        chosen, key=lambda row: (order[row.name], MAGNIFICATIONS.index(row.magnification))
    )


def level_note(protocol: str) -> str:
    if protocol == "patient":
        return "image level, held-out patients"
    return "tile level, against the corrected tile labels"


def paper_reference(kind: str) -> list[dict[str, Any]]:
    """The paper's own published rows of a model kind."""
    return [entry for entry in PAPER_RESULTS if entry["kind"] == "paper" and entry["model"] == kind]


def metrics_table(rows: list[Row], kind: str, protocols: list[str]) -> tuple[str, dict[str, Any]]:
    """Table 5 (CNN) or 6 (hybrid): both conventions, one section per protocol."""
    number = TABLES[kind][0]
    title = f"Table {number}: {KIND_TITLES[kind]} metrics (rows: backbone x magnification)"
    lines = [
        f"# {title}\n",
        "Two conventions, both given. *Paper's convention*: as the paper prints them, "
        "sensitivity, specificity, precision and F1 averaged over the two classes weighted by "
        "class size (`skhybrid.evaluation.paper_convention_report`); sensitivity and "
        "specificity then both equal the accuracy. *skhybrid's convention*: malignant "
        "positive, sensitivity = recall of malignant, specificity = recall of benign.",
    ]
    lines.append(f"\n{data_line(rows)}")
    data: dict[str, Any] = {"title": title, "sections": []}
    for protocol in protocols:
        chosen = section_rows(rows, kind, protocol)
        heading = f"{PROTOCOL_TITLES[protocol]}: {level_note(protocol)}"
        lines.append(f"\n## {heading}\n")
        if not chosen:
            lines.append(f"No {KIND_TITLES[kind]} rows (`--models` left them out).\n")
            continue
        paper_rows = [
            [row.name, row.magnification, *(percent(row.paper[c]) for c in PAPER_COLUMNS)]
            for row in chosen
        ]
        if protocol == "random-tile":  # the paper's own numbers, under its own protocol
            for entry in paper_reference(kind):
                paper_rows.append(
                    [
                        f"**paper**: {entry['method']}",
                        entry["magnification"],
                        *(percent(entry.get(c)) for c in PAPER_COLUMNS),
                    ]
                )
        ours_rows = [
            [
                row.name,
                row.magnification,
                *(percent(100 * getattr(row.report, c)) for c in OURS_COLUMNS),
            ]
            for row in chosen
        ]
        lines += [
            "### Paper's convention (averaged over benign and malignant, weighted)\n",
            markdown_table(
                ["Model", "Magnification", *(HEADERS[c] for c in PAPER_COLUMNS)], paper_rows
            ),
            "### skhybrid's convention (malignant positive)\n",
            markdown_table(
                ["Model", "Magnification", *(HEADERS[c] for c in OURS_COLUMNS)], ours_rows
            ),
        ]
        data["sections"].append(
            {
                "protocol": protocol,
                "level": chosen[0].level,
                "rows": [
                    {
                        "model": row.name,
                        "backbone": row.backbone,
                        "self_learning_rounds": row.rounds,
                        "magnification": row.magnification,
                        "paper_convention": row.paper,
                        "malignant_positive": {
                            c: 100 * getattr(row.report, c) for c in OURS_COLUMNS
                        },
                    }
                    for row in chosen
                ],
            }
        )
    return "\n".join(lines) + "\n", data


def confusion_table(rows: list[Row], kind: str, protocols: list[str]) -> tuple[str, dict[str, Any]]:
    """Table 7 (CNN) or 8 (hybrid): TP, FP, FN, TN with benign positive, as the paper."""
    number = TABLES[kind][1]
    title = f"Table {number}: {KIND_TITLES[kind]} confusion matrices (benign positive)"
    lines = [
        f"# {title}\n",
        "As in the paper, the positive class is **benign**: TP are benign samples predicted "
        "benign, FP malignant samples predicted benign, FN benign samples predicted "
        "malignant, TN malignant samples predicted malignant (skhybrid's own reports, "
        "malignant positive, have TP and TN swapped, and FP and FN). Total = test samples.",
    ]
    data: dict[str, Any] = {"title": title, "positive_class": "benign", "sections": []}
    for protocol in protocols:
        chosen = section_rows(rows, kind, protocol)
        lines.append(f"\n## {PROTOCOL_TITLES[protocol]}: {level_note(protocol)}\n")
        if not chosen:
            lines.append(f"No {KIND_TITLES[kind]} rows (`--models` left them out).\n")
            continue
        body = []
        for row in chosen:
            counts = row.confusion
            body.append([row.name, row.magnification, *counts.values(), sum(counts.values())])
        if protocol == "random-tile":
            for entry in paper_reference(kind):
                counts = entry["confusion"]
                body.append(
                    [
                        f"**paper**: {entry['method']}",
                        entry["magnification"],
                        *counts.values(),
                        sum(counts.values()),
                    ]
                )
        lines.append(
            markdown_table(["Model", "Magnification", "TP", "FP", "FN", "TN", "Total"], body)
        )
        data["sections"].append(
            {
                "protocol": protocol,
                "level": chosen[0].level,
                "rows": [
                    {"model": row.name, "magnification": row.magnification, **row.confusion}
                    for row in chosen
                ],
            }
        )
    return "\n".join(lines) + "\n", data


def paper_accuracy_for(row: Row) -> float | None:
    """The paper's published accuracy for the same backbone, model and magnification."""
    for entry in PAPER_RESULTS:
        if entry["kind"] == "paper" and (
            entry["model"],
            entry["backbone"],
            entry["magnification"],
        ) == (row.model, row.backbone, row.magnification):
            return entry["accuracy"]
    return None


def comparison_table(rows: list[Row], protocols: list[str]) -> tuple[str, dict[str, Any]]:
    """Table 9: our accuracies, the paper's beside them, and the other work it compares with."""
    title = "Table 9: comparison with the paper and other work (accuracy, %)"
    ours = [
        row
        for protocol in protocols
        for kind in TABLES
        for row in section_rows(rows, kind, protocol)
    ]
    body = [
        [
            row.name,
            row.magnification,
            row.protocol + (" (leaky)" if row.protocol != "patient" else ""),
            percent(100 * row.report.accuracy),
            percent(paper_accuracy_for(row)) if row.protocol == "random-tile" else "",
        ]
        for row in ours
    ]
    others = [
        [
            entry["method"],
            entry["magnification"] or NOT_QUOTED,
            entry["task"] or NOT_QUOTED,
            entry["protocol"] or NOT_QUOTED,
            entry["source"],
            percent(entry["accuracy"]),
        ]
        for entry in PAPER_RESULTS
    ]
    text = "\n".join(
        [
            f"# {title}\n",
            "Accuracy is the same in both conventions. The paper's column holds its published "
            "figure for the same backbone, model and magnification, where it has one that "
            "this script can attribute (`PAPER_RESULTS`); only the random-tile rows are "
            "comparable with it (the same protocol), and only on BreakHis.\n",
            "## This run\n",
            markdown_table(
                ["Model", "Magnification", "Protocol", "Ours", "Paper"], body, text_columns=3
            ),
            "## Published numbers (the paper's own, and the work it compares with)\n",
            'Quoted, not re-measured; "not quoted" marks what is not known here for sure.\n',
            markdown_table(
                ["Method", "Magnification", "Task", "Split", "Source", "Accuracy (%)"],
                others,
                text_columns=5,
            ),
        ]
    )
    data = {
        "title": title,
        "rows": [
            {
                "model": row.name,
                "magnification": row.magnification,
                "protocol": row.protocol,
                "accuracy": 100 * row.report.accuracy,
                "paper_accuracy": paper_accuracy_for(row)
                if row.protocol == "random-tile"
                else None,
            }
            for row in ours
        ],
        "published": list(PAPER_RESULTS),
    }
    return text, data


# -- figures -----------------------------------------------------------------------------------
def new_figure(n_panels: int, *, width: float = 4.6, height: float = 3.8, ncols: int = 4) -> tuple:
    """A bare matplotlib Figure (pyplot untouched) with a grid of ``n_panels`` axes."""
    from matplotlib.figure import Figure

    ncols = min(ncols, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for axis in axes[n_panels:]:
        axis.set_visible(False)
    return fig, axes[:n_panels]


def accuracy_figure(rows: list[Row], kind: str, protocols: list[str], path: Path) -> bool:
    """Figure 6 (CNN) or 7 (hybrid): accuracy per magnification, one line per model."""
    chosen = [row for row in rows if row.model == kind]
    if not chosen:
        return False
    fig, axes = new_figure(len(protocols))
    for protocol, axis in zip(protocols, axes):
        section = section_rows(rows, kind, protocol)
        for name in dict.fromkeys(row.name for row in section):
            points = [row for row in section if row.name == name]
            axis.plot(
                [row.magnification for row in points],
                [100 * row.report.accuracy for row in points],
                marker="o",
                label=name,
            )
        axis.set_title(f"{protocol} ({level_note(protocol).split(',')[0]})", fontsize="medium")
        axis.set_xlabel("magnification")
        axis.set_ylabel("accuracy (%)")
        axis.legend(fontsize="small")
    fig.suptitle(f"Figure {TABLES[kind][2]}: {KIND_TITLES[kind]} accuracy per magnification")
    fig.savefig(path, dpi=100)
    return True


def curve_figure(
    rows: list[Row], magnification: str, protocols: list[str], plot, path: Path
) -> bool:
    """Figure 9 (ROC) or 10 (precision-recall) of one magnification: one panel per protocol."""
    fig, axes = new_figure(len(protocols), width=5.2, height=4.6)
    drawn = False
    for protocol, axis in zip(protocols, axes):
        for row in rows:
            if (row.magnification, row.protocol) != (magnification, protocol):
                continue
            y_true, score = row.curve
            if len(np.unique(y_true)) < 2:
                continue  # a curve needs both classes in the test set
            plot(y_true, score, pos_label=row.positive, ax=axis, label=row.name, title=None)
            drawn = True
        axis.set_title(f"{magnification}, {protocol} ({level_note(protocol).split(',')[0]})")
    if drawn:
        number, what = (9, "ROC") if plot is plot_roc_curve else (10, "precision-recall")
        fig.suptitle(f"Figure {number}: {what} curves, {magnification} (malignant positive)")
        fig.savefig(path, dpi=100)
    return drawn


def training_figure(rows: list[Row], magnification: str, metric: str, path: Path) -> bool:
    """Figure 11 (loss) or 12 (accuracy): per epoch, one panel per training."""
    chosen = [row for row in rows if row.magnification == magnification and row.history]
    if not chosen:
        return False
    fig, axes = new_figure(len(chosen), width=4.2, height=3.4)
    for row, axis in zip(chosen, axes):
        plot_training_history(row.history, metrics=(metric,), ax=axis)
        axis.set_title(f"{row.protocol}: {row.name}", fontsize="small")
    number, what = (11, "training loss") if metric == "loss" else (12, "training accuracy")
    fig.suptitle(f"Figure {number}: {what} per epoch, {magnification}")
    fig.savefig(path, dpi=100)
    return True


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def csv_row(row: Row) -> dict[str, Any]:
    return {
        "magnification": row.magnification,
        "protocol": row.protocol,
        "model": row.name,
        "level": row.level,
        **{c: getattr(row.report, c) for c in OURS_COLUMNS},
        "tp": row.report.tp,
        "fp": row.report.fp,
        "fn": row.report.fn,
        "tn": row.report.tn,
        "n": row.report.n,
        **{f"paper_{c}": row.paper[c] / 100 for c in PAPER_COLUMNS},
        **{f"paper_{k.lower()}": v for k, v in row.confusion.items()},
    }


#: History keys the training figures read (the rest of a skorch history is left out).
HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "valid_loss",
    "train_acc",
    "valid_acc",
    "backbone_frozen",
    "best_epoch_restored",
)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    rows: list[Row] = []
    proposer = (
        "colour/texture features + logistic regression"
        if args.relabel_with == "features"
        else "the network being trained"
    )
    table4: list[str] = [
        "# Table 4: tile labels per self-learning round\n",
        f"Label corrections proposed by {proposer} (`--relabel-with {args.relabel_with}`).",
    ]
    table4_data: dict[str, Any] = {"title": "Table 4: tile labels per self-learning round"}
    table4_data["sections"] = []
    show_rounds = len([rounds for rounds in args.self_learning if rounds]) > 1
    print(settings_line(args))
    started = time.perf_counter()
    for index, magnification in enumerate(args.magnifications):
        data = load_set(args, magnification, index)
        print(f"\n=== {magnification}: {data['source']}, {len(data['y'])} images")
        for protocol in args.protocols:
            for backbone in args.backbones:
                for model in args.models:
                    for rounds in args.self_learning:
                        name = row_name(backbone, model, rounds, show_rounds=show_rounds)
                        run = run_experiment(
                            data["X"],
                            data["y"],
                            data["patients"],
                            # aggregation: run_experiment picks "mil" after self-learning
                            classifier=make_classifier(model, **classifier_params(args, backbone)),
                            tiler=SubImageTiler(grid=(3, 3), tile_size=(args.tile_size,) * 2),
                            protocol=protocol,
                            self_learning_rounds=rounds,
                            relabel_with=args.relabel_with,
                            tile_truth=data["tile_truth"],
                            test_size=held_out_share(args, protocol),
                            random_state=args.seed,
                            verbose=0,
                        )
                        level = "image" if protocol == "patient" else "tile (corrected labels)"
                        report = run.reports[level]
                        classifier = run.model.steps[-1][1]
                        roles = roles_of(classifier)
                        history = [
                            {k: entry[k] for k in HISTORY_KEYS if k in entry}
                            for entry in classifier.history_
                        ]
                        rows.append(
                            Row(
                                magnification,
                                protocol,
                                backbone,
                                model,
                                rounds,
                                name,
                                level,
                                report,
                                roles.negative,
                                roles.positive,
                                run.curves[level],
                                history,
                                data["source"],
                            )
                        )
                        print(
                            f"{protocol:<12} {name:<40} {level:<24} accuracy "
                            f"{report.accuracy:.4f}  AUC {report.auc:.4f}  "
                            f"({run.info['seconds']} s)"
                        )
                        results.append(
                            {
                                "magnification": magnification,
                                "protocol": protocol,
                                "model": name,
                                **run.to_dict(),
                                "test_size": held_out_share(args, protocol),
                                "paper_convention": rows[-1].paper,
                                "paper_confusion": rows[-1].confusion,
                                "history": history,
                            }
                        )
                        # With the features proposer the corrected labels are the same for
                        # every row of a magnification and protocol: one section is enough.
                        # With the network as proposer each row has its own history.
                        title = f"{magnification}, {protocol} protocol"
                        if args.relabel_with == "model":
                            title += f", {name}"
                        sections = {section["title"] for section in table4_data["sections"]}
                        if rounds and run.history_table and title not in sections:
                            table4 += [f"\n## {title}\n", run.history_table, ""]
                            table4_data["sections"].append({"title": title, "rounds": run.history})
    write_outputs(args, rows, table4, table4_data, results)
    print(f"\nWrote tables and figures to {args.out}/ in {time.perf_counter() - started:.0f} s")


def write_outputs(
    args: argparse.Namespace,
    rows: list[Row],
    table4: list[str],
    table4_data: dict[str, Any],
    results: list[dict[str, Any]],
) -> None:
    """Write Tables 4-9 (Markdown, ``tables.json``), Figures 6-12, the CSV and the JSON."""
    out = args.out
    tables: dict[str, Any] = {"table4": table4_data}
    (out / "table4_self_learning.md").write_text("\n".join(table4) + "\n")
    for kind, suffix in (("cnn", "cnn"), ("hybrid", "hybrid")):
        metrics_number, confusion_number, _ = TABLES[kind]
        text, data = metrics_table(rows, kind, args.protocols)
        (out / f"table{metrics_number}_{suffix}.md").write_text(text)
        tables[f"table{metrics_number}"] = data
        text, data = confusion_table(rows, kind, args.protocols)
        (out / f"table{confusion_number}_{suffix}_confusion.md").write_text(text)
        tables[f"table{confusion_number}"] = data
    text, data = comparison_table(rows, args.protocols)
    (out / "table9_comparison.md").write_text(text)
    tables["table9"] = data
    (out / "tables.json").write_text(json.dumps(tables, indent=2, default=str) + "\n")
    write_csv(out / "metrics.csv", [csv_row(row) for row in rows])
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")

    skipped = []
    for kind in TABLES:
        name = f"figure{TABLES[kind][2]}_{kind}_accuracy.png"
        if not accuracy_figure(rows, kind, args.protocols, out / name):
            skipped.append(name)
    for magnification in args.magnifications:
        for name, plot in (
            (f"figure9_roc_{magnification}.png", plot_roc_curve),
            (f"figure10_precision_recall_{magnification}.png", plot_precision_recall_curve),
        ):
            if not curve_figure(rows, magnification, args.protocols, plot, out / name):
                skipped.append(name)
        for metric, name in (
            ("loss", f"figure11_training_loss_{magnification}.png"),
            ("acc", f"figure12_training_accuracy_{magnification}.png"),
        ):
            if not training_figure(rows, magnification, metric, out / name):
                skipped.append(name)
    if skipped:
        print(f"Not drawn (no rows, or a test set of one class): {', '.join(skipped)}")


if __name__ == "__main__":
    main()
