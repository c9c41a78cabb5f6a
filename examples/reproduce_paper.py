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

    # synthetic data, a few minutes on a CPU
    python examples/reproduce_paper.py --quick --out paper-quick

Without ``--data-dir`` the synthetic data set stands in for BreakHis, one synthetic set per
"magnification" (a different seed each). See docs/reproducing.md for why the two protocols
differ.
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
from skhybrid.workflow import make_classifier, run_experiment

PAPER_BACKBONES = ("vgg19", "googlenet", "resnet101")
MAGNIFICATIONS = ("40X", "100X", "200X", "400X")
TABLE_NUMBER = {"40X": 5, "100X": 6, "200X": 7, "400X": 8}
PROTOCOL_TITLES = {
    "random-tile": "Random split of tiles (the paper's protocol; LEAKY)",
    "patient": "Patient-wise split (honest)",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="BreakHis folder")
    parser.add_argument("--magnifications", nargs="+", default=list(MAGNIFICATIONS))
    parser.add_argument("--backbones", nargs="+", default=list(PAPER_BACKBONES))
    parser.add_argument("--models", nargs="+", choices=("cnn", "hybrid"), default=["cnn", "hybrid"])
    parser.add_argument(
        "--self-learning",
        nargs="+",
        type=int,
        default=[0, 4],
        help="self-learning rounds to compare (0 = without)",
    )
    parser.add_argument(
        "--protocols", nargs="+", choices=tuple(PROTOCOL_TITLES), default=["random-tile", "patient"]
    )
    parser.add_argument("--weights", default="none", help="imagenet, none or a state-dict path")
    parser.add_argument("--tile-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--freeze-epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--n-images", type=int, default=120, help="synthetic images per set")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=(230, 350),
        metavar=("H", "W"),
        help="synthetic image size",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few minutes on a CPU: small synthetic data, resnet18, 40X only",
    )
    parser.add_argument("--out", type=Path, default=Path("paper-tables"))
    args = parser.parse_args()
    if args.quick:
        args.magnifications = args.magnifications[:1] if args.data_dir else ["40X"]
        args.backbones = ["resnet18"]
        args.tile_size, args.epochs, args.batch_size = 32, 2, 32
        args.n_images, args.image_size = 48, (96, 144)
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
        n_images=args.n_images, image_size=tuple(args.image_size), random_state=args.seed + index
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
        else (10 if pretrained else 0),
        "lr": args.lr or (1e-4 if pretrained else 1e-3),
        "batch_size": args.batch_size,
        "device": args.device,
        "random_state": args.seed,
        "verbose": 0,
    }


def row_name(backbone: str, model: str, rounds: int) -> str:
    kind = "CNN-LSTM" if model == "hybrid" else "CNN"
    return f"{backbone} {kind}" + (" + self-learning" if rounds else "")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    table4: list[str] = ["# Table 4: tile labels per self-learning round\n"]
    started = time.perf_counter()
    for index, magnification in enumerate(args.magnifications):
        data = load_set(args, magnification, index)
        print(f"\n=== {magnification}: {data['source']}, {len(data['y'])} images")
        sections = [
            f"# Table {TABLE_NUMBER.get(magnification, '')}: {magnification} ({data['source']})\n"
        ]
        csv_rows: list[dict[str, Any]] = []
        for protocol in args.protocols:
            reports = {}
            for backbone in args.backbones:
                for model in args.models:
                    for rounds in args.self_learning:
                        name = row_name(backbone, model, rounds)
                        run = run_experiment(
                            data["X"],
                            data["y"],
                            data["patients"],
                            classifier=make_classifier(model, **classifier_params(args, backbone)),
                            tiler=SubImageTiler(grid=(3, 3), tile_size=(args.tile_size,) * 2),
                            protocol=protocol,
                            self_learning_rounds=rounds,
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
                        if (
                            rounds
                            and run.history_table
                            and not any(
                                magnification in line and protocol in line for line in table4
                            )
                        ):
                            table4 += [
                                f"\n## {magnification}, {protocol} protocol\n",
                                run.history_table,
                                "",
                            ]
            level_note = (
                "image level, held-out patients"
                if protocol == "patient"
                else "tile level, against the corrected tile labels"
            )
            sections += [
                f"\n## {PROTOCOL_TITLES[protocol]} ({level_note})\n",
                format_reports(reports),
            ]
        name = f"table{TABLE_NUMBER.get(magnification, 9)}_{magnification}"
        (args.out / f"{name}.md").write_text("\n".join(sections) + "\n")
        write_csv(args.out / f"{name}.csv", csv_rows)
    (args.out / "table4_self_learning.md").write_text("\n".join(table4) + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nWrote tables to {args.out}/ in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
