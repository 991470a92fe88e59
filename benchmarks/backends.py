"""ResNet-20 training images/s on each installed Keras backend, float32, side by side.

Each backend trains the same `kr.resnet_cifar(20)` (32x32x3, batch 128, SGD) on the same
random arrays with `model.fit`, in its own process (a process has one backend), after one
warm-up epoch; rounds alternate between backends and medians are reported. Keras's own
defaults apply: `jit_compile="auto"` (XLA on JAX, none on TensorFlow and PyTorch's CPU).

Run: python benchmarks/backends.py [--rounds 3 --steps 20]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _report import cpu_flags, emit  # noqa: E402

BATCH = 128
CHILD = f"""
import json, sys, time, numpy as np, keras, keras_residual as kr
steps = int(sys.argv[1])
x = np.random.default_rng(0).random((steps * {BATCH}, 32, 32, 3), dtype="float32")
y = keras.utils.to_categorical(np.arange(len(x)) % 10, 10)
model = kr.resnet_cifar(20, dtype="float32")
model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "categorical_crossentropy")
model.fit(x, y, batch_size={BATCH}, epochs=1, verbose=0)  # warm-up: tracing, compilation
start = time.perf_counter()
model.fit(x, y, batch_size={BATCH}, epochs=1, verbose=0)
print(json.dumps(len(x) / (time.perf_counter() - start)))
"""


def run(backend: str, steps: int) -> float:
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(steps)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    backends = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b)]
    speeds = {b: [] for b in backends}
    for _ in range(args.rounds):
        for backend in backends:
            speeds[backend].append(run(backend, args.steps))
    reference = statistics.median(speeds["tensorflow"])
    rows = [
        {
            "backend": backend,
            "images/s": round(statistics.median(values), 1),
            "vs tensorflow": round(statistics.median(values) / reference, 2),
        }
        for backend, values in speeds.items()
    ]
    emit("ResNet-20 training by Keras backend (float32)", rows, cpu_flags=cpu_flags(),
         batch=BATCH, steps=args.steps, rounds=args.rounds)  # fmt: skip


if __name__ == "__main__":
    main()
