"""Training throughput against what a PyTorch user would pick: the same network, side by
side in one run.

The toolkit trains a preset as its jobs do (`--dtype auto`, its recipe's optimizer, loss and
batch size, its tf.data pipeline); its PyTorch twin (same layers, shapes and parameter
count, built here from the spec) trains with PyTorch's best CPU path: `torch.compile`,
bfloat16 autocast and channels_last, SGD with Nesterov momentum, label-smoothed
cross-entropy, the data as one in-memory tensor (no loader cost). Both use every core
(`torch.set_num_threads(os.cpu_count())`). Rounds alternate between the two; medians of
images per second are reported, with the ratio.

PyTorch is installed only for this benchmark: pip install torch (CPU build).
Run: python benchmarks/torch_side_by_side.py --preset fast_cifar_s [--rounds 5 --steps 10]
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
import torch  # noqa: E402
from _data import random_dataset  # noqa: E402
from _report import emit, parse_changes  # noqa: E402
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


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


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


def torch_rounds(spec, recipe, steps: int):
    torch.set_num_threads(os.cpu_count())
    model = torch_twin(spec).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    images = torch.randn(recipe.batch_size, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (recipe.batch_size,))

    @torch.compile
    def forward_backward(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            forward_backward(images, labels)
            optimizer.step()
        return recipe.batch_size * steps / (time.perf_counter() - start)

    return model, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fast_cifar_s")
    parser.add_argument("--recipe", help="default: airbench for the speed family, else fast")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--spec", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args()
    recipe = kr.get_recipe(args.recipe or kr.default_recipe(args.preset))
    spec = kr.get_spec(args.preset).replace(**parse_changes(args.spec))
    keras_model, keras_run = keras_rounds(spec, recipe, args.steps)
    torch_model, torch_run = torch_rounds(spec, recipe, args.steps)
    parameters = sum(p.numel() for p in torch_model.parameters() if p.requires_grad)
    trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    if parameters != trainable:
        raise SystemExit(f"twin differs: {parameters:,} vs {trainable:,} trainable parameters")
    keras_run(), torch_run()  # warm-up: tracing and compilation
    speeds = {"keras_residual": [], "pytorch": []}
    for _ in range(args.rounds):
        speeds["keras_residual"].append(keras_run())
        speeds["pytorch"].append(torch_run())
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    rows = [
        {"path": "keras_residual (tf.data, --dtype auto)",
         "img_per_s": round(medians["keras_residual"])},
        {"path": "PyTorch compile + bf16 autocast + channels_last",
         "img_per_s": round(medians["pytorch"])},
    ]  # fmt: skip
    emit(
        f"Training throughput, {args.preset} (batch {recipe.batch_size}), side by side",
        rows,
        ratio=round(medians["keras_residual"] / medians["pytorch"], 3),
        parameters=parameters,
        rounds=speeds,
        changes=args.spec,
        torch=torch.__version__,
    )


if __name__ == "__main__":
    main()
