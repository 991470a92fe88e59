"""Training throughput of Wang et al.'s time-series ResNet, side by side in one run: the
toolkit's `resnet_series` (its blocks, the `series` recipe's optimizer), the same network
written in plain `keras.layers` (the reference implementation of Ismail Fawaz et al.; both
in the toolkit's `dtype="auto"` policy, so mixed bfloat16 where the CPU computes it), and
its PyTorch twin in eager mode and under `torch.compile` (bfloat16 autocast where the CPU
computes bfloat16 natively, else float32). The same in-memory data on every side; rounds
alternate; medians of training series per second.

PyTorch is installed only for this benchmark: pip install torch (CPU build).
Run: python benchmarks/series_throughput.py [--steps-per-series 150 --batch 64 --rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import cpu_flags, emit  # noqa: E402
from torch import nn  # noqa: E402

import keras_residual as kr  # noqa: E402

KERNELS = (8, 5, 3)


def reference_keras(input_shape, classes: int, width: int = 64, dtype=None) -> keras.Model:
    """dl-4-tsc's `classifiers/resnet.py` in plain keras.layers, its layers in the dtype
    policy `dtype` (None: Keras's global one) but for the float32 softmax head."""
    layers = keras.layers
    inputs = keras.Input(input_shape)

    def block(x, filters, expand):
        y = x
        for size in KERNELS:
            y = layers.Conv1D(filters, size, padding="same", dtype=dtype)(y)
            y = layers.BatchNormalization(dtype=dtype)(y)
            y = layers.Activation("relu", dtype=dtype)(y) if size != KERNELS[-1] else y
        shortcut = layers.Conv1D(filters, 1, padding="same", dtype=dtype)(x) if expand else x
        shortcut = layers.BatchNormalization(dtype=dtype)(shortcut)
        return layers.Activation("relu", dtype=dtype)(layers.add([shortcut, y], dtype=dtype))

    x = block(block(block(inputs, width, True), 2 * width, True), 2 * width, False)
    x = layers.GlobalAveragePooling1D(dtype=dtype)(x)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax", dtype="float32")(x))


class TorchBlock(nn.Module):
    def __init__(self, channels_in: int, channels: int):
        super().__init__()
        convs, norms, previous = [], [], channels_in
        for size in KERNELS:
            convs.append(nn.Conv1d(previous, channels, size, padding="same"))
            norms.append(nn.BatchNorm1d(channels))
            previous = channels
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.project = nn.Conv1d(channels_in, channels, 1) if channels_in != channels else None
        self.shortcut_norm = nn.BatchNorm1d(channels)

    def forward(self, x):
        y = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            y = norm(conv(y))
            y = torch.relu(y) if i < len(self.convs) - 1 else y
        shortcut = self.project(x) if self.project is not None else x
        return torch.relu(self.shortcut_norm(shortcut) + y)


def torch_twin(channels: int, classes: int, width: int = 64) -> nn.Module:
    return nn.Sequential(
        TorchBlock(channels, width),
        TorchBlock(width, 2 * width),
        TorchBlock(2 * width, 2 * width),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(2 * width, classes),
    )


def keras_run(model, x, y, batch: int):
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="categorical_crossentropy")
    data = keras.utils.to_categorical(y, int(y.max()) + 1)

    def run() -> float:
        start = time.perf_counter()
        model.fit(x, data, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        return len(x) / (time.perf_counter() - start)

    return run


def torch_run(x, y, batch: int, compiled: bool, bfloat16: bool):
    torch.set_num_threads(os.cpu_count())
    model = torch_twin(x.shape[-1], int(y.max()) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    series = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))
    labels = torch.from_numpy(y.astype("int64"))

    def forward_backward(xb, yb):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            loss = loss_fn(model(xb), yb)
        loss.backward()
        return loss

    step = torch.compile(forward_backward) if compiled else forward_backward

    def run() -> float:
        start = time.perf_counter()
        for i in range(0, len(series), batch):
            optimizer.zero_grad(set_to_none=True)
            step(series[i : i + batch], labels[i : i + batch])
            optimizer.step()
        return len(series) / (time.perf_counter() - start)

    return model, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps-per-series", type=int, default=150, help="series length")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=8, help="batches a round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    count = args.batch * args.batches
    x = rng.normal(size=(count, args.steps_per_series, args.channels)).astype("float32")
    y = rng.integers(0, 2, count)
    shape = x.shape[1:]
    bfloat16 = any(flag in cpu_flags() for flag in ("avx512_bf16", "amx_bf16"))
    policy = kr.resolve_dtype("auto")  # both Keras sides in the same dtype policy
    toolkit = kr.build("resnet_series", shape, 2, dtype=policy)
    reference = reference_keras(shape, 2, dtype=policy)
    twin, eager = torch_run(x, y, args.batch, compiled=False, bfloat16=bfloat16)
    _, compiled = torch_run(x, y, args.batch, compiled=True, bfloat16=bfloat16)
    counts = {  # trainable parameters (PyTorch's batch-norm statistics are buffers)
        "toolkit": sum(int(np.prod(w.shape)) for w in toolkit.trainable_weights),
        "keras": sum(int(np.prod(w.shape)) for w in reference.trainable_weights),
        "torch": sum(p.numel() for p in twin.parameters()),
    }
    if len(set(counts.values())) > 1:
        raise SystemExit(f"the networks differ: {counts}")
    paths = {
        "keras_residual resnet_series (dtype auto)": keras_run(toolkit, x, y, args.batch),
        "plain keras.layers, same network (dtype auto)": keras_run(reference, x, y, args.batch),
        f"PyTorch eager{' + bf16 autocast' if bfloat16 else ''}": eager,
        f"PyTorch compile{' + bf16 autocast' if bfloat16 else ''}": compiled,
    }
    for run in paths.values():
        run()  # warm-up: tracing and compilation
    speeds = {name: [] for name in paths}
    loads = []
    for _ in range(args.rounds):
        loads.append(round(os.getloadavg()[0], 2))
        for name, run in paths.items():
            speeds[name].append(run())
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    best = max(v for k, v in medians.items() if k.startswith("PyTorch"))
    rows = [
        {"path": name, "series_per_s": round(value, 1), "vs_best_pytorch": round(value / best, 3)}
        for name, value in medians.items()
    ]
    emit(
        f"Training throughput, resnet_series ({args.steps_per_series} steps, batch {args.batch})",
        rows,
        parameters=counts,
        toolkit_vs_plain_keras=round(
            medians["keras_residual resnet_series (dtype auto)"]
            / medians["plain keras.layers, same network (dtype auto)"],
            3,
        ),
        load_average_per_round=loads,
        rounds={k: [round(v, 1) for v in values] for k, values in speeds.items()},
        torch=torch.__version__,
        bfloat16=bfloat16,
    )


if __name__ == "__main__":
    main()
