"""On Keras's PyTorch backend: the toolkit's network against the same network written with
plain `keras.layers`, and both against plain PyTorch, side by side in one run.

Run with the backend set: KERAS_BACKEND=torch python benchmarks/torch_backend.py
[--preset fast_cifar_s --rounds 3 --steps 10]. Both Keras models train with `model.fit` on
the same in-memory arrays, the preset's recipe's optimizer and loss (`compile_model`) and the
`auto` dtype policy; plain PyTorch is `torch_side_by_side.py`'s eager twin (bfloat16 autocast,
channels_last). Rounds alternate; medians of images/s are reported, with the CPU time other
processes took during each path's rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch_side_by_side  # noqa: E402
from _report import emit  # noqa: E402

import keras_residual as kr  # noqa: E402
from keras_residual.optimizers import compile_model  # noqa: E402


def plain_keras_twin(spec: kr.ResNetSpec) -> keras.Model:
    """The network of a basic-block `ResNetSpec` (cifar or whiten stem), in `keras.layers`
    only: the layers `torch_side_by_side.torch_twin` uses, in the same order."""
    layers, norm = keras.layers, spec.norm

    def batch_norm(x):
        return layers.BatchNormalization(
            momentum=norm.momentum, epsilon=norm.epsilon, scale=norm.scale
        )(x)

    def norm_act(x):
        return layers.Activation(spec.activation)(batch_norm(x))

    def conv(filters, strides=1):
        return layers.Conv2D(filters, 3, strides, padding="same", use_bias=False)

    inputs = keras.Input(spec.input_shape)
    if spec.stem == "whiten":  # a fixed 2x2 convolution (its bias frozen too here)
        x = layers.Conv2D(8 * spec.input_shape[-1], 2, trainable=False)(inputs)
        x = layers.Activation(spec.activation)(x)
    else:
        x = norm_act(conv(spec.stem_filters)(inputs))
    for depth, filters, stride in zip(spec.depths, spec.filters, spec.strides, strict=True):
        if spec.downsample == "pool":
            x = conv(filters)(x)
            x = layers.MaxPooling2D(stride)(x) if stride > 1 else x
            x, stride = norm_act(x), 1
        for b in range(depth):
            y = norm_act(conv(filters, stride if b == 0 else 1)(x))
            y = batch_norm(conv(filters)(y))
            if stride != 1 or x.shape[-1] != filters:
                raise SystemExit("plain twin: identity shortcuts only")
            x = layers.Activation(spec.activation)(layers.Add()([x, y]))
    pool = layers.GlobalMaxPooling2D if spec.pooling == "max" else layers.GlobalAveragePooling2D
    x = layers.Dense(spec.num_classes)(pool()(x))
    outputs = layers.Rescaling(spec.logit_scale)(x) if spec.logit_scale != 1 else x
    return keras.Model(inputs, layers.Activation("softmax", dtype="float32")(outputs))


def keras_rounds(model: keras.Model, recipe, steps: int):
    """A function that trains `model` on `steps` random batches with `fit`; images/s."""
    count = recipe.batch_size * steps
    x = np.random.default_rng(0).random((count, *model.input_shape[1:]), dtype="float32")
    y = keras.utils.to_categorical(np.arange(count) % model.output_shape[-1])
    compile_model(model, recipe, steps, 100)

    def run() -> float:
        start = time.perf_counter()
        model.fit(x, y, batch_size=recipe.batch_size, epochs=1, verbose=0, shuffle=False)
        return count / (time.perf_counter() - start)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fast_cifar_s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if keras.config.backend() != "torch":
        raise SystemExit("run with KERAS_BACKEND=torch")
    torch.set_num_threads(os.cpu_count())
    keras.config.set_dtype_policy(kr.resolve_dtype("auto"))
    recipe = kr.get_recipe(kr.default_recipe(args.preset))
    spec = kr.get_spec(args.preset)
    toolkit, plain = kr.build_network(spec), plain_keras_twin(spec)
    ours, theirs = "keras_residual on Keras-torch", "plain keras.layers on Keras-torch"
    paths = {
        ours: keras_rounds(toolkit, recipe, args.steps),
        theirs: keras_rounds(plain, recipe, args.steps),
        "plain PyTorch eager": torch_side_by_side.torch_rounds(
            torch_side_by_side.torch_twin(spec), recipe, args.steps, compiled=False
        ),
    }
    speeds, others = torch_side_by_side.alternate(paths, args.rounds)
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    pytorch = medians["plain PyTorch eager"]
    rows = [{"path": name, "img_per_s": round(speed), "vs_pytorch": round(speed / pytorch, 3),
             "other_cpu_s": max(others[name])} for name, speed in medians.items()]  # fmt: skip
    count = {name: sum(int(np.prod(w.shape)) for w in m.trainable_weights)
             for name, m in (("toolkit", toolkit), ("plain", plain))}  # fmt: skip
    emit(
        f"Keras's PyTorch backend: toolkit vs plain keras.layers vs PyTorch, {args.preset}",
        rows,
        toolkit_vs_plain_keras=round(medians[ours] / medians[theirs], 3),
        trainable_parameters=count,
        dtype=keras.config.dtype_policy().name,
        batch_size=recipe.batch_size,
        rounds=speeds,
        other_cpu_seconds=others,
        torch=torch.__version__,
        keras=keras.__version__,
    )


if __name__ == "__main__":
    main()
