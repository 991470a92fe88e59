"""The README's main job, timed and recorded: `keras-residual search --dataset D` with its
defaults, run as a user runs it, its results kept as a record in `benchmarks/results/`.

    python benchmarks/main_job.py                      # MNIST, seed 0
    python benchmarks/main_job.py --dataset mnist --seed 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "search"
        command = [sys.executable, "-m", "keras_residual_cli", "search", "--dataset"]
        command += [args.dataset, "--seed", str(args.seed), "--out", str(out)]
        started = time.monotonic()
        subprocess.run(command, check=True)
        wall = time.monotonic() - started
        results = json.loads((out / "results.json").read_text())
    best = results["best"]
    rows = [
        {
            "trial": t["trial_id"],
            "status": t["status"],
            "blocks_per_stage": t.get("blocks_per_stage"),
            "width": t.get("width"),
            "params": t.get("params"),
            "seconds": None if t.get("trial_seconds") is None else round(t["trial_seconds"], 1),
            "val_accuracy": t.get("val_accuracy"),
        }
        for t in results["trials"]
    ]
    name = "MNIST main job" if args.dataset == "mnist" else "Main job"
    emit(
        f"{name}: keras-residual search --dataset {args.dataset}",
        rows,
        dataset=args.dataset,
        seed=args.seed,
        wall_seconds=round(wall, 1),
        best_trial=best["trial_id"],
        best_params=best["params"],
        retrained_epochs=best["retrained_epochs"],
        test_accuracy=best["test_accuracy"],
        dtype=results["config"]["dtype"],
    )


if __name__ == "__main__":
    main()
