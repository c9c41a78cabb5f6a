"""Reproduce the paper's experiments and write its Tables 4-8, under both protocols.

For each magnification, each backbone (VGG19, GoogLeNet, ResNet101), CNN vs hybrid CNN-LSTM,
with and without self-learning, under the paper's random split of tiles (leaky) and an honest
patient-wise split. Writes Markdown and CSV tables in the paper's layout:

- ``table4_self_learning.md``: tile class counts per self-learning round, per magnification;
- ``table5_40X.md`` ... ``table8_400X.md``: accuracy, sensitivity, specificity, precision, F1
  and AUC of every model, one section per protocol (``.csv`` alongside);
- ``results.json``: everything.

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
network itself, as in the paper. See docs/reproducing.md for why the two protocols differ.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from skhybrid import SubImageTiler, load_breakhis, make_histology
from skhybrid.metrics import format_reports
from skhybrid.workflow import classifier_defaults, make_classifier, run_experiment

PAPER_BACKBONES = ("vgg19", "googlenet", "resnet101")
MAGNIFICATIONS = ("40X", "100X", "200X", "400X")
TABLE_NUMBER = {"40X": 5, "100X": 6, "200X": 7, "400X": 8}
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
        f"relabel with {args.relabel_with}"
    )


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    proposer = (
        "colour/texture features + logistic regression"
        if args.relabel_with == "features"
        else "the network being trained"
    )
    table4: list[str] = [
        "# Table 4: tile labels per self-learning round\n",
        f"Label corrections proposed by {proposer} (`--relabel-with {args.relabel_with}`).",
    ]
    table4_sections: set[str] = set()
    show_rounds = len([rounds for rounds in args.self_learning if rounds]) > 1
    print(settings_line(args))
    started = time.perf_counter()
    for index, magnification in enumerate(args.magnifications):
        data = load_set(args, magnification, index)
        print(f"\n=== {magnification}: {data['source']}, {len(data['y'])} images")
        sections = [f"# Table {TABLE_NUMBER[magnification]}: {magnification} ({data['source']})\n"]
        csv_rows: list[dict[str, Any]] = []
        for protocol in args.protocols:
            reports = {}
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
                            random_state=args.seed,
                            verbose=0,
                        )
                        level = "image" if protocol == "patient" else "tile (corrected labels)"
                        report = run.reports[level]
                        reports[name] = report
                        print(
                            f"{protocol:<12} {name:<40} {level:<24} accuracy "
                            f"{report.accuracy:.4f}  AUC {report.auc:.4f}  ({run.info['seconds']} s)"
                        )
                        results.append(
                            {
                                "magnification": magnification,
                                "protocol": protocol,
                                "model": name,
                                **run.to_dict(),
                            }
                        )
                        csv_rows.append(
                            {
                                "protocol": protocol,
                                "model": name,
                                "level": level,
                                **report.to_dict(),
                            }
                        )
                        # With the features proposer the corrected labels are the same for
                        # every row of a magnification and protocol: one section is enough.
                        # With the network as proposer each row has its own history.
                        title = f"{magnification}, {protocol} protocol"
                        if args.relabel_with == "model":
                            title += f", {name}"
                        if rounds and run.history_table and title not in table4_sections:
                            table4_sections.add(title)
                            table4 += [f"\n## {title}\n", run.history_table, ""]
            level_note = (
                "image level, held-out patients"
                if protocol == "patient"
                else "tile level, against the corrected tile labels"
            )
            sections += [
                f"\n## {PROTOCOL_TITLES[protocol]} ({level_note})\n",
                format_reports(reports),
            ]
        name = f"table{TABLE_NUMBER[magnification]}_{magnification}"
        (args.out / f"{name}.md").write_text("\n".join(sections) + "\n")
        write_csv(args.out / f"{name}.csv", csv_rows)
    (args.out / "table4_self_learning.md").write_text("\n".join(table4) + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nWrote tables to {args.out}/ in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
