"""Training speed of Wang et al.'s time-series ResNet against TensorFlow's threads, on the
shapes of the archive's datasets: one process with TensorFlow's default threads (one per
core), one process with one thread, and two one-thread processes side by side (their steps
added). Each trains `resnet_series` with the `series` recipe's optimizer and batch (a tenth
of the series, at most 16) on random data of the dataset's shape, dtype auto. Rounds
alternate the three ways; medians of training steps per second; the other CPU load per
round is printed.

Short series on small batches are where TensorFlow's per-op costs, not arithmetic, set the
pace: there, handing an op's work to a second thread costs more than it saves.

Run: python benchmarks/series_threads.py [--rounds 3 --epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

from _report import busy_seconds, children_seconds, emit  # noqa: E402

# The archive's datasets as the search trains them: steps, channels, training series (JapaneseVowels
# padded to its longest series).
SHAPES = {
    "ItalyPowerDemand": (24, 1, 67),
    "JapaneseVowels": (29, 12, 270),
    "BasicMotions": (100, 6, 40),
    "GunPoint": (150, 1, 50),
    "ArrowHead": (251, 1, 36),
    "ACSF1": (1460, 1, 100),
}


def worker(steps: int, channels: int, count: int, threads: int, epochs: int) -> None:
    """Train in this process with `threads` (0: TensorFlow's default) and print the
    steps per second of `epochs` epochs after a first, tracing one."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    import numpy as np

    import keras_residual as kr
    from keras_residual.optimizers import compile_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, steps, channels)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 2, count), 2)
    recipe = kr.get_recipe("series").for_examples(count)
    batches = -(-count // recipe.batch_size)
    model = kr.build("resnet_series", (steps, channels), 2, dtype=kr.resolve_dtype("auto"))
    compile_model(model, recipe, batches, epochs + 1)
    model.fit(x, y, batch_size=recipe.batch_size, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(x, y, batch_size=recipe.batch_size, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - started
    print(json.dumps({"steps_per_s": epochs * batches / seconds, "batch": recipe.batch_size}))


def _start(shape, threads: int, epochs: int) -> subprocess.Popen:
    command = [sys.executable, __file__, "--worker", *map(str, shape), str(threads), str(epochs)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _measure(shape, threads: int, processes: int, epochs: int) -> tuple[float, int]:
    """Steps per second of `processes` side by side (added) and their batch."""
    running = [_start(shape, threads, epochs) for _ in range(processes)]
    results = []
    for process in running:
        out, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"a worker failed: exit code {process.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return sum(r["steps_per_s"] for r in results), results[0]["batch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20, help="timed epochs a measurement")
    parser.add_argument("--datasets", default=",".join(SHAPES))
    parser.add_argument("--worker", nargs=5, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker[:4], epochs=args.worker[4])
        return
    ways = {"default threads": (0, 1), "one thread": (1, 1), "two one-thread processes": (1, 2)}
    rows, loads = [], {}
    for name in args.datasets.split(","):
        shape = SHAPES[name]
        epochs = max(2, args.epochs * 150 // shape[0]) if shape[0] > 150 else args.epochs
        speeds, loads[name] = {way: [] for way in ways}, []
        for _ in range(args.rounds):
            for way, (threads, processes) in ways.items():
                busy, own = busy_seconds(), children_seconds()
                speed, batch = _measure(shape, threads, processes, epochs)
                own = children_seconds() - own  # the workers'; the rest is the machine's other load
                loads[name].append(round(max(0.0, busy_seconds() - busy - own), 1))
                speeds[way].append(speed)
        medians = {way: statistics.median(values) for way, values in speeds.items()}
        base = medians["default threads"]
        rows.append({
            "dataset": name,
            "steps": shape[0],
            "channels": shape[1],
            "batch": batch,
            **{f"{way} steps/s": round(v, 1) for way, v in medians.items()},
            "one thread vs default": round(medians["one thread"] / base, 2),
            "two processes vs default": round(medians["two one-thread processes"] / base, 2),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    emit(
        "Training steps per second of resnet_series against TensorFlow's threads",
        rows,
        rounds=args.rounds,
        other_cpu_seconds_per_measurement=loads,
    )


if __name__ == "__main__":
    main()
