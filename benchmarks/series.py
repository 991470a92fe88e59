"""Wang et al.'s ResNet for time series trained by `keras-residual train` on UCR/UEA archive
datasets (their fixed train/test split), as a user trains it: test accuracy and wall time
per dataset beside the published ResNet's (Ismail Fawaz et al. 2019: 1,500 epochs of Adam).

    python benchmarks/series.py --data-dir DIR                 # DIR/NAME/NAME_TRAIN.ts ...
    python benchmarks/series.py --data-dir DIR --datasets GunPoint --epochs 100
"""

from __future__ import annotations

import argparse
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


def run(dataset: Path, model: str, epochs: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "keras_residual_cli", "train", "--model", model]
        command += ["--dataset", str(dataset), "--epochs", str(epochs), "--seed", str(seed)]
        command += ["--out", str(Path(folder) / "run")]
        started = time.monotonic()
        printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        wall = time.monotonic() - started
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", printed).group(1))
    return {"test_accuracy": round(100 * accuracy, 2), "wall_seconds": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--datasets", default=",".join(PUBLISHED))
    parser.add_argument("--model", default="resnet_series")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for name in args.datasets.split(","):
        result = run(args.data_dir / name, args.model, args.epochs, args.seed)
        rows.append({"dataset": name, **result, "published_accuracy": PUBLISHED.get(name)})
        print(rows[-1], flush=True)
    emit(
        f"Time series: keras-residual train --model {args.model} --epochs {args.epochs}",
        rows,
        model=args.model,
        epochs=args.epochs,
        seed=args.seed,
        recipe="the preset's (series)",
    )


if __name__ == "__main__":
    main()
