"""Training images/s of the jobs' `--dtype auto` policy vs float32, by depth and width.

`auto` is `mixed_bfloat16` on CPUs that compute bfloat16 natively; this checks that
it pays at every width the MNIST search uses (8 and 16), not only for the ResNet-20 of
`throughput.py`. MNIST-shaped synthetic data, batch 128, the `fast` recipe; all models train
alternately in one process and the medians of the rounds are reported.

Run: python benchmarks/precision.py [--rounds 3 --steps 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

from _data import random_dataset  # noqa: E402
from _report import emit  # noqa: E402

import keras_residual as kr  # noqa: E402

BATCH, SHAPE = 128, (28, 28, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    data = random_dataset("mnist", args.steps * BATCH)
    default = kr.resolve_dtype("auto")
    built = {}
    for depth in (8, 20):
        for width in (8, 16):
            for dtype in ("float32", default):
                model = kr.resnet_cifar(depth, SHAPE, width=width, dtype=dtype)
                kr.training.compile_model(model, kr.get_recipe("fast"), args.steps, 1)
                pipeline = kr.make_pipeline(data, "train", BATCH).take(args.steps)
                model.fit(pipeline.take(3), verbose=0)  # trace and warm up
                built[(depth, width, dtype)] = (model, pipeline)
    rates = {key: [] for key in built}
    for _ in range(args.rounds):
        for key, (model, pipeline) in built.items():
            start = time.perf_counter()
            model.fit(pipeline, verbose=0)
            rates[key].append(args.steps * BATCH / (time.perf_counter() - start))
    rows = []
    for depth in (8, 20):
        for width in (8, 16):
            base = statistics.median(rates[(depth, width, "float32")])
            ours = statistics.median(rates[(depth, width, default)])
            rows.append(
                {
                    "model": f"resnet{depth} width {width}",
                    "float32_images_per_s": round(base),
                    f"{default}_images_per_s": round(ours),
                    "speedup": round(ours / base, 2),
                }
            )
    emit("auto dtype policy vs float32", rows, default_policy=default, batch=BATCH)


if __name__ == "__main__":
    main()
