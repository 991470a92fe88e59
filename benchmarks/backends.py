"""Each installed Keras backend, side by side: ResNet-20 training images/s (float32), and the
deepest presets (1,000+ layers) built, trained a step, saved and reloaded.

Throughput: each backend trains the same `kr.resnet_cifar(20)` (32x32x3, batch 128, SGD) on
the same random arrays with `model.fit`, in its own process (a process has one backend),
after one warm-up epoch; rounds alternate between backends and medians are reported. Keras's
own defaults apply: `jit_compile="auto"` (XLA on JAX, none on TensorFlow and PyTorch's CPU).

Deep presets (`--deep`): `resnet1202` and `preact_resnet1001` at their own widths, one
training step at batch 2 (SGD 1e-3: a 1,000-layer network needs a gentle first step),
`.keras` save and `safe_mode` reload, the largest output difference. On JAX with Keras's
default XLA compilation first, cut at `--compile-limit` seconds, then with
`jit_compile=False`.

Run: python benchmarks/backends.py [--rounds 3 --steps 20] [--deep]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

from _report import emit  # noqa: E402

BATCH = 128
DEEP_PRESETS = ("resnet1202", "preact_resnet1001")
THROUGHPUT = f"""
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
DEEP = """
import json, sys, time, numpy as np, keras, keras_residual as kr
name, jit, path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
start = time.perf_counter()
model = kr.build(name, dtype="float32")
x = np.random.default_rng(0).random((2, 32, 32, 3), dtype="float32")
y = keras.utils.to_categorical(np.arange(2), 10)
model.compile(keras.optimizers.SGD(1e-3), "categorical_crossentropy", jit_compile=jit)
loss = model.fit(x, y, batch_size=2, epochs=1, verbose=0).history["loss"][-1]
model.save(path)
loaded = keras.saving.load_model(path, safe_mode=True)
outputs = [keras.ops.convert_to_numpy(m(x)) for m in (model, loaded)]
difference = float(np.max(np.abs(outputs[0] - outputs[1])))
print(json.dumps({"layers": len(model.layers), "loss_finite": bool(np.isfinite(loss)),
                  "outputs_finite": bool(np.isfinite(outputs[0]).all()),
                  "max_abs_diff": difference, "seconds": time.perf_counter() - start}))
"""


def child(backend: str, source: str, *args: str, timeout: float | None = None) -> str:
    """The last line a fresh interpreter on `backend` prints running `source`."""
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", source, *args],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    return result.stdout.strip().splitlines()[-1]


def throughput(backends: list[str], rounds: int, steps: int) -> None:
    speeds = {b: [] for b in backends}
    for _ in range(rounds):
        for backend in backends:
            speeds[backend].append(json.loads(child(backend, THROUGHPUT, str(steps))))
    reference = statistics.median(speeds["tensorflow"])
    rows = [
        {
            "backend": backend,
            "images/s": round(statistics.median(values), 1),
            "vs tensorflow": round(statistics.median(values) / reference, 2),
        }
        for backend, values in speeds.items()
    ]
    emit("ResNet-20 training by Keras backend (float32)", rows,
         batch=BATCH, steps=steps, rounds=rounds)  # fmt: skip


def deep(backends: list[str], presets: list[str], compile_limit: float) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in presets:
            for backend in backends:
                modes = ["auto", False] if backend == "jax" else ["auto"]
                for jit in modes:
                    row = {"preset": name, "backend": backend, "jit_compile": jit}
                    path = os.path.join(folder, f"{name}-{backend}.keras")
                    try:
                        limit = compile_limit if jit == "auto" and backend == "jax" else None
                        row.update(json.loads(child(backend, DEEP, name, json.dumps(jit), path,
                                                    timeout=limit)))  # fmt: skip
                        row["seconds"] = round(row["seconds"], 1)
                    except subprocess.TimeoutExpired:
                        row["seconds"] = f"> {compile_limit:.0f} (XLA still compiling)"
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    emit("Deepest presets: build, one training step, save, reload (float32)", rows, batch=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--deep", action="store_true", help="only the deepest presets")
    parser.add_argument("--presets", nargs="+", default=list(DEEP_PRESETS), help="with --deep")
    parser.add_argument("--compile-limit", type=float, default=300.0, metavar="SECONDS")
    args = parser.parse_args()
    backends = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b)]
    if args.deep:
        deep(backends, args.presets, args.compile_limit)
    else:
        throughput(backends, args.rounds, args.steps)


if __name__ == "__main__":
    main()
