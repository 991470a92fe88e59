"""Residual networks on UCR/UEA archive datasets (their fixed train/test split), run as a
user runs them: `keras-residual search --dataset DIR/NAME --time-budget T` (the default), or
`keras-residual train --model resnet_series --epochs E` (Wang et al.'s ResNet with the
`series` recipe). Test accuracy and wall time per dataset beside the published ResNet's
(Ismail Fawaz et al. 2019: 1,500 epochs of Adam).

`--reference` also trains the toolkit's `resnet_series` with the published recipe, side by
side: the toolkit's `wang2017` recipe is that of the code of Ismail Fawaz et al. (dl-4-tsc),
1,500 epochs of Adam at 1e-3 with batches of a tenth of the training set (at most 64), the
rate halved after 50 epochs without a lower training loss (down to 1e-4), the weights of the
lowest training loss tested. The toolkit's data (z-normalised series, channels standardised)
and dtype policy on both sides.

    python benchmarks/series.py --data-dir DIR                 # DIR/NAME/NAME_TRAIN.ts ...
    python benchmarks/series.py --data-dir DIR --datasets GunPoint --time-budget 5m
    python benchmarks/series.py --data-dir DIR --train --epochs 100
    python benchmarks/series.py --data-dir DIR --train --epochs 300 --reference
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import emit

# Mean test accuracy of the ResNet in Ismail Fawaz et al. 2019 (JapaneseVowels: 10 runs).
PUBLISHED = {
    "GunPoint": 99.07,
    "ArrowHead": 83.77,
    "ItalyPowerDemand": 96.15,
    "ACSF1": 91.60,
    "BasicMotions": None,
    "JapaneseVowels": 99.2,
}


def _run(command: list[str]) -> tuple[str, float]:
    started = time.monotonic()
    printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return printed, time.monotonic() - started


def train(dataset: Path, model: str, epochs: int, seed: int, validation_split: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "keras_residual_cli", "train", "--model", model]
        command += ["--dataset", str(dataset), "--epochs", str(epochs), "--seed", str(seed)]
        command += ["--validation-split", str(validation_split)]
        printed, wall = _run([*command, "--out", str(Path(folder) / "run")])
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", printed).group(1))
    return {"test_accuracy": round(100 * accuracy, 2), "wall_seconds": round(wall, 1)}


def reference(dataset: Path, seed: int, epochs: int = 1500, batch: int | None = None) -> dict:
    """`resnet_series` trained with the published recipe (`wang2017`), in this process."""
    import keras

    import keras_residual as kr

    started = time.monotonic()
    data = kr.load_dataset(dataset, validation_split=0.0, seed=seed)
    recipe = kr.get_recipe("wang2017").for_examples(len(data.y_train))
    if batch:
        recipe = kr.get_recipe(recipe, batch_size=batch, reference_batch=batch)
    keras.utils.set_random_seed(seed)  # the initial weights too
    model = kr.build("resnet_series", data.input_shape, data.num_classes, dtype="auto")
    kr.train(model, data, epochs=epochs, recipe=recipe, seed=seed, verbose=0)
    return {
        "reference_test_accuracy": round(100 * kr.evaluate(model, data)["accuracy"], 2),
        "reference_wall_seconds": round(time.monotonic() - started, 1),
        "reference_batch": recipe.batch_size,
    }


def search(dataset: Path, budget: str, seed: int, keep: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = (keep or Path(folder)) / dataset.name
        command = [sys.executable, "-m", "keras_residual_cli", "search", "--dataset"]
        command += [str(dataset), "--time-budget", budget, "--seed", str(seed)]
        printed, wall = _run([*command, "--out", str(out)])
        (out / "printed.txt").write_text(printed)
        results = json.loads((out / "results.json").read_text())
    best = results["best"]
    values = best["hyperparameters"]
    return {
        "test_accuracy": round(100 * best["test_accuracy"], 2),
        "wall_seconds": round(wall, 1),
        "trials": len(results["trials"]),
        "best": f"w{values['width']} x{values['blocks_per_stage']} k{values['kernel_size']}"
        f"{' se' if values['se_ratio'] else ''}",
        "retrained_epochs": best["retrained_epochs"],
        "retrain_recipe": best["retrain_recipe"] or "series",  # None: the trials' own
        "ensemble_size": best["ensemble_size"],
        "member_test_accuracy": [round(100 * a, 2) for a in best["member_test_accuracy"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--datasets", default=",".join(PUBLISHED))
    parser.add_argument("--time-budget", default="10m", help="of each search")
    parser.add_argument("--train", action="store_true", help="train --model, no search")
    parser.add_argument("--model", default="resnet_series")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument(
        "--validation-split",
        type=float,
        default=0.0,
        help="of --train (default 0: all training series, as the search's retraining)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference", action="store_true", help="also train with the published recipe"
    )
    parser.add_argument("--reference-epochs", type=int, default=1500)
    parser.add_argument(
        "--reference-batch", type=int, help="of the published recipe (default: its own rule)"
    )
    parser.add_argument("--keep", type=Path, help="keep each search's folder in KEEP/NAME")
    args = parser.parse_args()
    rows = []
    for name in args.datasets.split(","):
        if args.train:
            result = train(
                args.data_dir / name, args.model, args.epochs, args.seed, args.validation_split
            )
        else:
            result = search(args.data_dir / name, args.time_budget, args.seed, args.keep)
        if args.reference:
            result.update(
                reference(
                    args.data_dir / name, args.seed, args.reference_epochs, args.reference_batch
                )
            )
        rows.append({"dataset": name, **result, "published_accuracy": PUBLISHED.get(name)})
        print(rows[-1], flush=True)
    if args.train:
        title = f"Time series: keras-residual train --model {args.model} --epochs {args.epochs}"
        meta = {"model": args.model, "epochs": args.epochs, "recipe": "the preset's (series)",
                "validation_split": args.validation_split}  # fmt: skip
    else:
        title = f"Time series: keras-residual search --time-budget {args.time_budget}"
        meta = {"time_budget": args.time_budget}
    if args.reference:
        title += f" vs the published recipe ({args.reference_epochs} epochs of Adam)"
        meta["reference_epochs"] = args.reference_epochs
        if args.reference_batch:
            meta["reference_batch"] = args.reference_batch
    emit(title, rows, seed=args.seed, **meta)


if __name__ == "__main__":
    main()
