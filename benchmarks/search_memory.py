"""Resident memory across many tiny search trials: it must stay flat (or bounded).

Runs the same search twice, side by side: trials in trial processes (the default) and
trials in the search's process (`isolate_trials=False`), and reports the search process's
RSS after every trial, its growth per trial, the largest trial process, how many trial
processes served the trials, and each search's seconds.

Run: python benchmarks/search_memory.py [--trials 32]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from _data import random_dataset  # noqa: E402
from _report import emit  # noqa: E402

from keras_residual.search import ResidualHyperModel  # noqa: E402
from keras_residual.search.isolation import resident_mib  # noqa: E402
from keras_residual.search.tuner import RandomSearch  # noqa: E402


def search_rss(data, trials: int, isolate: bool) -> tuple[list[float], int, float]:
    """The search process's RSS after each trial, the trial processes and the seconds."""
    space = {"width": [4, 6, 8], "blocks_per_stage": [1, 2], "learning_rate": [0.05, 0.1, 0.2]}
    space |= {"batch_size": [32, 64], "shortcut": ["A", "B", "gated"]}
    samples, processes = [], set()

    def sample(trial):
        samples.append(resident_mib())
        processes.update(child.pid for child in multiprocessing.active_children())

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        tuner = RandomSearch(
            ResidualHyperModel((28, 28, 1), 10, space=space),
            objective="val_accuracy",
            max_trials=trials,
            directory=directory,
            seed=0,
            isolate_trials=isolate,
            on_trial_done=sample,
        )
        tuner.search(data, epochs=1, verbose=0)
    return samples, len(processes), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=32)
    args = parser.parse_args()
    data = random_dataset("mnist", 512)
    isolated, processes, isolated_seconds = search_rss(data, args.trials, isolate=True)
    trial_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    in_process, _, in_process_seconds = search_rss(data, args.trials, isolate=False)
    rows = [
        {"trial": i, "isolated_rss_mib": round(a, 1), "in_process_rss_mib": round(b, 1)}
        for i, (a, b) in enumerate(zip(isolated, in_process, strict=True))
    ]
    emit(
        "Search-process RSS after each trial",
        rows,
        trials=args.trials,
        isolated_growth_per_trial_mib=growth(isolated),
        in_process_growth_per_trial_mib=growth(in_process),
        isolated_first_last_mib=[round(isolated[0]), round(isolated[-1])],
        in_process_first_last_mib=[round(in_process[0]), round(in_process[-1])],
        largest_trial_process_mib=round(trial_peak),
        trial_processes=processes,
        isolated_seconds=round(isolated_seconds, 1),
        in_process_seconds=round(in_process_seconds, 1),
    )


def growth(samples: list[float]) -> float:
    """Least-squares slope of RSS over trials, MiB per trial."""
    return round(float(np.polyfit(range(len(samples)), samples, 1)[0]), 2)


if __name__ == "__main__":
    main()
