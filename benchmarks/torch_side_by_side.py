"""Training throughput against what a PyTorch user would pick: the same network, side by
side in one run.

The toolkit trains a preset as its jobs do (`--dtype auto`, its recipe's optimizer, loss and
batch size, its tf.data pipeline); its PyTorch twin (same layers, shapes and parameter
count, built here from the spec) trains with bfloat16 autocast and channels_last, SGD with
Nesterov momentum, label-smoothed cross-entropy, the data as one in-memory tensor (no loader
cost), both eagerly and under `torch.compile`: PyTorch's best path is the faster of the two
(compile is the slower one for wide networks on some CPUs). `--airbench` adds airbench94's
own network (Jordan 2024) on the same two PyTorch paths, compared per FLOP. Every path uses
every core. Rounds alternate between the paths; medians of images per second are reported,
with each path's forward MFLOPs per image and the CPU time other processes took during its
rounds (PyTorch's spinning OpenMP threads slow down sharply when anything else runs).

PyTorch is installed only for this benchmark: pip install torch (CPU build).
Run: python benchmarks/torch_side_by_side.py --preset fast_cifar_s --airbench [--rounds 5]

Every path uses the cores this process may run on: `taskset -c 0 python ...` measures one
core (both frameworks size their thread pools to the process's CPU affinity).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
from _airbench_torch import Scale, airbench94_net  # noqa: E402
from _data import random_dataset  # noqa: E402
from _report import emit, other_cpu_seconds, parse_changes  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional  # noqa: E402

import keras_residual as kr  # noqa: E402


def batch_norm(channels: int, norm: kr.Norm) -> nn.BatchNorm2d:
    """The toolkit's batch norm with `norm`'s settings; `Norm(scale=False)`: a frozen scale."""
    layer = nn.BatchNorm2d(channels, momentum=1 - norm.momentum, eps=norm.epsilon)
    layer.weight.requires_grad_(norm.scale)
    return layer


def activation(spec: kr.ResNetSpec) -> nn.Module:
    """The spec's hidden activation (Keras's "gelu" is the exact, erf form, as nn.GELU)."""
    return {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}[spec.activation]()


class Block(nn.Module):
    """The toolkit's post-activation BasicBlock with shortcut option A or B."""

    def __init__(self, channels_in: int, channels: int, stride: int, spec: kr.ResNetSpec):
        super().__init__()
        shortcut, norm, self.act = spec.shortcut, spec.norm, activation(spec)
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
        self.bn1 = batch_norm(channels, norm)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = batch_norm(channels, norm)
        self.reshape = stride != 1 or channels_in != channels
        self.pad = channels - channels_in
        self.stride = stride
        self.projection = None
        if self.reshape and shortcut == "B":
            self.projection = nn.Sequential(
                nn.Conv2d(channels_in, channels, 1, stride, bias=False),
                batch_norm(channels, norm),
            )

    def forward(self, x):
        y = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        if self.projection is not None:
            x = self.projection(x)
        elif self.reshape:  # option A: subsample, zero-pad the new channels
            x = functional.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.pad))
        return self.act(y + x)


def torch_twin(spec: kr.ResNetSpec) -> nn.Module:
    """The PyTorch network of a basic-block `ResNetSpec` with a cifar or whiten stem."""
    if spec.block != "basic" or spec.preact or spec.stem not in ("cifar", "whiten"):
        raise SystemExit(f"no PyTorch twin for {spec.name}: basic post-activation blocks only")
    channels = spec.input_shape[-1]
    if spec.stem == "whiten":
        whiten = nn.Conv2d(channels, 8 * channels, 2, bias=True)
        whiten.weight.requires_grad_(False)
        layers, channels = [whiten, activation(spec)], 8 * channels
    else:
        stem = nn.Conv2d(channels, spec.stem_filters, 3, padding=1, bias=False)
        layers = [stem, batch_norm(spec.stem_filters, spec.norm), activation(spec)]
        channels = spec.stem_filters
    for depth, filters, stride in zip(spec.depths, spec.filters, spec.strides, strict=True):
        if spec.downsample == "pool":
            layers += [nn.Conv2d(channels, filters, 3, padding=1, bias=False)]
            layers += [nn.MaxPool2d(stride)] if stride > 1 else []
            layers += [batch_norm(filters, spec.norm), activation(spec)]
            channels, stride = filters, 1
        for b in range(depth):
            layers.append(Block(channels, filters, stride if b == 0 else 1, spec))
            channels = filters
    pool = nn.AdaptiveMaxPool2d(1) if spec.pooling == "max" else nn.AdaptiveAvgPool2d(1)
    layers += [pool, nn.Flatten(), nn.Linear(channels, spec.num_classes)]
    if spec.logit_scale != 1:
        layers.append(Scale(spec.logit_scale))
    return nn.Sequential(*layers)


def forward_mflops(model: nn.Module) -> float:
    """Forward MFLOPs per image of a PyTorch network (a multiply-add counts as two)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops() / 1e6


def keras_rounds(spec, recipe, steps: int):
    """A function that trains the toolkit's model `steps` steps and returns images/s."""
    data = random_dataset("cifar10", recipe.batch_size * steps)
    model = kr.build_network(spec, dtype=kr.resolve_dtype("auto"))
    train_ds, _ = kr.training.make_pipelines(data, recipe)
    kr.training.compile_model(model, recipe, steps, 100)

    def run() -> float:
        start = time.perf_counter()
        model.fit(train_ds, epochs=1, verbose=0, shuffle=False)
        return recipe.batch_size * steps / (time.perf_counter() - start)

    return model, run


def torch_rounds(model: nn.Module, recipe, steps: int, compiled: bool):
    """A function that trains `model` (bfloat16 autocast, channels_last) `steps` steps,
    eagerly or under `torch.compile`, and returns images/s."""
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    images = torch.randn(recipe.batch_size, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (recipe.batch_size,))

    def forward_backward(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    step = torch.compile(forward_backward) if compiled else forward_backward

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            step(images, labels)
            optimizer.step()
        return recipe.batch_size * steps / (time.perf_counter() - start)

    return run


def alternate(runs: dict, rounds: int) -> tuple[dict, dict]:
    """Each of `runs` (name: a function returning images/s) once to warm up (tracing,
    compilation), then `rounds` rounds of all in turn, each round printed: every run's
    images/s and the CPU seconds other processes took during it, per round."""
    for run in runs.values():
        run()
    speeds, others = {name: [] for name in runs}, {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            speed, other = other_cpu_seconds(run)
            speeds[name].append(round(speed, 1))
            others[name].append(round(other, 2))
        print({name: values[-1] for name, values in speeds.items()}, "other CPU s:",
              {name: values[-1] for name, values in others.items()}, flush=True)  # fmt: skip
    return speeds, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fast_cifar_s")
    parser.add_argument("--recipe", help="default: the preset's recipe")
    parser.add_argument("--airbench", action="store_true", help="add airbench94's network")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--spec", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    recipe = kr.get_recipe(args.recipe or kr.default_recipe(args.preset))
    spec = kr.get_spec(args.preset).replace(**parse_changes(args.spec))
    keras_model, keras_run = keras_rounds(spec, recipe, args.steps)
    twin = torch_twin(spec)
    parameters = sum(p.numel() for p in twin.parameters() if p.requires_grad)
    trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    if parameters != trainable:
        raise SystemExit(f"twin differs: {parameters:,} vs {trainable:,} trainable parameters")
    twin_mflops, our_mflops = forward_mflops(twin), kr.count_flops(keras_model) / 1e6
    paths = {  # name: (run, forward MFLOPs per image)
        "keras_residual (TF, tf.data, --dtype auto)": (keras_run, our_mflops),
        "PyTorch eager, twin": (torch_rounds(twin, recipe, args.steps, False), twin_mflops),
        "PyTorch compile, twin": (torch_rounds(torch_twin(spec), recipe, args.steps, True),
                                  twin_mflops),
    }  # fmt: skip
    if args.airbench:
        airbench_mflops = forward_mflops(airbench94_net())
        for compiled, name in ((False, "eager"), (True, "compile")):
            run = torch_rounds(airbench94_net(), recipe, args.steps, compiled)
            paths[f"PyTorch {name}, airbench94's network"] = (run, airbench_mflops)
    speeds, others = alternate({name: run for name, (run, _) in paths.items()}, args.rounds)
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    ours = medians[next(iter(paths))]
    best = max(medians["PyTorch eager, twin"], medians["PyTorch compile, twin"])
    rows = [
        {"path": name, "img_per_s": round(medians[name]), "mflops": round(mflops, 1),
         "fwd_gflop_per_s": round(medians[name] * mflops / 1e3, 1),
         "vs_toolkit": round(medians[name] / ours, 3),
         "other_cpu_s": round(max(others[name]), 2)}
        for name, (_, mflops) in paths.items()
    ]  # fmt: skip
    some = f" on {cores} of {os.cpu_count()} cores" if cores < os.cpu_count() else ""
    emit(
        f"Training throughput vs PyTorch eager and compile: {args.preset}{some}",
        rows,
        ratio_to_best_pytorch=round(ours / best, 3),
        parameters=parameters,
        batch_size=recipe.batch_size,
        steps=args.steps,
        rounds=speeds,
        other_cpu_seconds=others,
        changes=args.spec,
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        tensorflow=tf.__version__,
    )


if __name__ == "__main__":
    main()
