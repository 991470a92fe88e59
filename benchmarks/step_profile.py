"""Where a training step's time goes, by kind of op: the toolkit against its PyTorch twin.

Trains a preset as `torch_side_by_side.py` does (the toolkit: `--dtype auto`, its recipe and
tf.data pipeline; its PyTorch twin: eager, bfloat16 autocast, channels_last) for a few steps
after warm-up, under each framework's profiler (TensorFlow's trace, read as its op
statistics, and its XLA runs; `torch.profiler`), and sums every op's own time a step by
kind: convolutions forward and backward, batch norm, pooling, activation, casts, other
arithmetic, optimizer and input pipeline. An op's own time is the time of its call, its
threads included; with 2 cores two ops may overlap, so the sum can exceed the step. The
step's wall time is given beside it.

PyTorch is installed only for this benchmark: pip install torch (CPU build).
Run: python benchmarks/step_profile.py --preset fast_cifar_s [--steps 4]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import torch_side_by_side  # noqa: E402
from _report import emit  # noqa: E402

import keras_residual as kr  # noqa: E402

# Kinds of op, by the first pattern that matches an op's type (TensorFlow) or name (PyTorch).
KINDS = [
    ("convolution backward, weights", r"Conv2DBackpropFilter"),
    ("convolution backward, data", r"Conv2DBackpropInput"),
    ("convolution backward (PyTorch: both)", r"convolution_backward"),
    ("convolution forward", r"Conv2D|convolution|conv2d"),
    ("batch norm", r"BatchNorm|batch_norm"),
    ("pooling", r"Pool|pool"),
    ("activation", r"^(Erfc?|Exp|Relu|ReluGrad)$|gelu|relu|threshold_backward"),
    ("casts", r"^Cast$|_to_copy|to$|copy_"),
    ("optimizer", r"ResourceApply|Assign|foreach|sgd|mul_$|add_$|lerp"),
    ("input pipeline", r"Dataset|Iterator"),
    ("loss and head", r"Softmax|softmax|MatMul|addmm|mm$|cross_entropy|nll"),
    ("other arithmetic", r"."),
]


def kind_of(name: str) -> str:
    return next(kind for kind, pattern in KINDS if re.search(pattern, name))


def toolkit_profile(spec, recipe, steps: int) -> tuple[dict, float]:
    """Milliseconds a step by kind of op, and the step's wall milliseconds, from TensorFlow's
    profiler trace of one `fit` of `steps` steps after two warm-up ones."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    _, run = torch_side_by_side.keras_rounds(spec, recipe, steps)
    run(), run()
    folder = tempfile.mkdtemp()
    tf.profiler.experimental.start(folder)
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    tf.profiler.experimental.stop()
    (trace,) = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)
    table = json.loads(
        _pywrap_profiler_plugin.xspace_to_tools_data([trace], "framework_op_stats", {})[0]
    )
    table = table[0] if isinstance(table, list) else table
    columns = [column["id"] for column in table["cols"]]
    totals = collections.Counter()
    for row in table["rows"]:
        op = dict(zip(columns, (cell["v"] if cell else None for cell in row["c"]), strict=True))
        if op["type"] != "IDLE":
            totals[kind_of(op["type"])] += op["total_self_time"] / 1e3 / steps  # us -> ms
    # XLA's compiled loops (the toolkit's GELU, forward and backward) are not TensorFlow ops:
    # their runs are the trace's CpuExecutable events.
    totals["activation"] += xla_seconds(trace) * 1e3 / steps
    return dict(totals), seconds * 1e3 / steps


def xla_seconds(trace: str) -> float:
    """Seconds spent running XLA executables in the profiler trace `trace` (an XSpace)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(trace, "rb") as handle:
        space.ParseFromString(handle.read())
    picoseconds, run = 0, "CpuExecutable::ExecuteAsyncOnStream"
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            picoseconds += sum(e.duration_ps for e in line.events if names[e.metadata_id] == run)
    return picoseconds / 1e12


def torch_profile(spec, recipe, steps: int) -> tuple[dict, float]:
    """The same for the PyTorch twin (eager), from `torch.profiler`."""
    run = torch_side_by_side.torch_rounds(
        torch_side_by_side.torch_twin(spec), recipe, steps, compiled=False
    )
    run(), run()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
    totals = collections.Counter()
    for event in profiler.key_averages():
        totals[kind_of(event.key)] += event.self_cpu_time_total / 1e3 / steps
    return dict(totals), seconds * 1e3 / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fast_cifar_s")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    recipe = kr.get_recipe(kr.default_recipe(args.preset))
    spec = kr.get_spec(args.preset)
    profiles = {
        "toolkit": toolkit_profile(spec, recipe, args.steps),
        "pytorch": torch_profile(spec, recipe, args.steps),
    }
    rows = []
    for kind, _ in KINDS:
        row = {"kind": kind}
        for name, (totals, _) in profiles.items():
            ms, whole = totals.get(kind, 0.0), sum(totals.values())
            row |= {f"{name}_ms": round(ms, 1), f"{name}_share": f"{ms / whole:.1%}"}
        rows.append(row)
    rows.append({"kind": "sum of the ops"} | {
        f"{name}_ms": round(sum(totals.values()), 1) for name, (totals, _) in profiles.items()
    })  # fmt: skip
    rows.append({"kind": "step (wall)"} | {
        f"{name}_ms": round(step, 1) for name, (_, step) in profiles.items()
    })  # fmt: skip
    emit(
        f"Where a training step's time goes: {args.preset} (batch {recipe.batch_size})",
        rows,
        preset=args.preset,
        steps=args.steps,
        images_per_s={
            name: round(recipe.batch_size / step * 1e3) for name, (_, step) in profiles.items()
        },  # fmt: skip
        torch=torch.__version__,
        tensorflow=tf.__version__,
    )


if __name__ == "__main__":
    main()
