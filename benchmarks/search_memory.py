"""Resident memory across many tiny search trials: it must stay flat.

Run: python benchmarks/search_memory.py [--trials 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from _report import emit  # noqa: E402

import keras_residual as kr  # noqa: E402
from keras_residual.search import ResidualHyperModel  # noqa: E402
from keras_residual.search.tuner import RandomSearch  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (512, 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, 512).astype("int32")
    data = kr.Dataset("mnist", x, y, x[:128], y[:128], x[:128], y[:128], tuple("0123456789"))
    space = {"width": [4, 6, 8], "blocks_per_stage": [1, 2], "learning_rate": [0.05, 0.1, 0.2]}
    space |= {"batch_size": [32, 64], "shortcut": ["projection", "pad", "gated"]}
    samples = []
    with tempfile.TemporaryDirectory() as directory:
        tuner = RandomSearch(
            ResidualHyperModel((28, 28, 1), 10, space=space),
            objective="val_accuracy",
            max_trials=args.trials,
            directory=directory,
            seed=0,
            on_trial_done=lambda trial: samples.append(rss_mib()),
        )
        tuner.search(data, epochs=1, verbose=0)
    rows = [{"trial": i, "rss_mib": round(r, 1)} for i, r in enumerate(samples)]
    quarter = max(1, len(samples) // 4)
    early, late = np.mean(samples[quarter : 2 * quarter]), np.mean(samples[-quarter:])
    emit(
        "RSS across search trials",
        rows,
        trials=len(samples),
        mean_rss_second_quarter_mib=round(float(early), 1),
        mean_rss_last_quarter_mib=round(float(late), 1),
        growth_per_trial_mib=round(float(np.polyfit(range(len(samples)), samples, 1)[0]), 2),
    )


if __name__ == "__main__":
    main()
