"""Why residual connections work, made visible: gradient flow and the degradation experiment."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from keras_residual import _checks
from keras_residual._plots import new_figure
from keras_residual.data import Dataset
from keras_residual.models import resnet_cifar
from keras_residual.training import Recipe, evaluate, get_recipe, train

GROUPINGS = ("block", "layer")


def gradient_norms(
    model: keras.Model, x, y, *, by: str = "block", training: bool = True
) -> list[dict]:
    """L2 norms of the loss gradient for each block (or layer) of `model`, on one batch.

    One row per group, from input to output: `model`, `group`, `position`,
    `gradient_norm`, `weight_norm` and `parameters` (over the group's trainable
    weights). `by="block"` groups by the model's own layers (`stem_conv`,
    `stage1_block1`, ..., `predictions`); `by="layer"` by the layers inside them
    (`stage1_block1/stage1_block1_conv1`). `y` holds class indices or one-hot rows.

    Example:
    >>> import numpy as np, keras_residual as kr
    >>> model = kr.resnet_cifar(8, (28, 28, 1), width=4)
    >>> x, y = np.zeros((4, 28, 28, 1), "float32"), np.arange(4)
    >>> rows = gradient_norms(model, x, y)
    >>> [r["group"] for r in rows][2:5]
    ['stage1_block1', 'stage2_block1', 'stage3_block1']
    """
    _checks.choice("by", by, GROUPINGS)
    x = tf.convert_to_tensor(x, dtype=model.inputs[0].dtype)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` differ in length: {len(x)} images, {len(y)} labels.")
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        outputs = model(x, training=training)
        loss = keras.ops.mean(_loss(model, y)(y, outputs))
    gradients = tape.gradient(loss, variables)
    groups: dict[str, dict] = {}
    for variable, gradient in zip(variables, gradients, strict=True):
        parts = variable.path.split("/")[:-1]
        name = parts[0] if by == "block" else "/".join(parts)
        group = groups.setdefault(name, {"gradient": 0.0, "weight": 0.0, "parameters": 0})
        if gradient is not None:
            group["gradient"] += float(tf.reduce_sum(tf.square(tf.cast(gradient, "float32"))))
        group["weight"] += float(np.sum(np.square(keras.ops.convert_to_numpy(variable))))
        group["parameters"] += int(np.prod(variable.shape))
    return [
        {
            "model": model.name,
            "group": name,
            "position": position,
            "gradient_norm": math.sqrt(group["gradient"]),
            "weight_norm": math.sqrt(group["weight"]),
            "parameters": group["parameters"],
        }
        for position, (name, group) in enumerate(groups.items())
    ]


def _loss(model: keras.Model, y: np.ndarray):
    probabilities = getattr(model.layers[-1], "activation", None) is keras.activations.softmax
    if y.ndim == 1:
        kind = keras.losses.SparseCategoricalCrossentropy
    else:
        kind = keras.losses.CategoricalCrossentropy
    return kind(from_logits=not probabilities, reduction=None)


def plot_gradient_flow(tables: Mapping[str, Sequence[dict]] | Sequence[dict], ax=None, *, log=True):
    """Draw gradient norms per block for one or several models on one axes.

    `tables` is one `gradient_norms` result or a mapping of labels to results. Models with
    the same blocks share block names on the x axis; otherwise the axis is relative depth.
    Returns the matplotlib figure.

    Example:
    >>> import numpy as np, keras_residual as kr
    >>> x, y = np.zeros((4, 28, 28, 1), "float32"), np.arange(4)
    >>> rows = gradient_norms(kr.resnet_cifar(8, (28, 28, 1), width=4), x, y)
    >>> plot_gradient_flow({"ResNet-8": rows}).axes[0].get_ylabel()
    'gradient L2 norm'
    """
    if not isinstance(tables, Mapping):
        tables = {tables[0]["model"] if tables else "model": tables}
    ax = ax if ax is not None else new_figure(width=7)[1]
    names = [[row["group"] for row in rows] for rows in tables.values()]
    shared = all(n == names[0] for n in names)
    for label, rows in tables.items():
        positions = np.arange(len(rows), dtype=float)
        if not shared:
            positions /= max(1, len(rows) - 1)
        ax.plot(positions, [row["gradient_norm"] for row in rows], marker="o", ms=3, label=label)
    if shared and names:
        ax.set_xticks(range(len(names[0])), names[0], rotation=90, fontsize=7)
    ax.set_xlabel("block" if shared else "relative depth (input → output)")
    ax.set_ylabel("gradient L2 norm")
    if log:
        ax.set_yscale("log")
    ax.legend()
    ax.figure.tight_layout()
    return ax.figure


@dataclass
class DegradationResult:
    """What `degradation_experiment` measured.

    `final`: one row per network (`kind` "plain"/"residual", `depth`, `params`, final
    `train_loss`, `train_accuracy`, `val_loss`, `val_accuracy`, `seconds`).
    `curves`: per network name (`plain20`, `resnet20`, ...), in the order of `final`, the
    training loss of every step (`step`, `loss`) and the epoch-end values (`history`).
    """

    final: list[dict] = field(default_factory=list)
    curves: dict[str, dict] = field(default_factory=dict)


class _StepLosses(keras.callbacks.Callback):
    """Per-step training loss, recovered from Keras's running (sample-weighted) mean."""

    def __init__(self, samples: int, batch_size: int):
        super().__init__()
        self.samples, self.batch_size = samples, batch_size
        self.losses: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._seen, self._total = 0, 0.0

    def on_train_batch_end(self, batch, logs=None):
        seen = min((batch + 1) * self.batch_size, self.samples)
        total = float(logs["loss"]) * seen
        self.losses.append((total - self._total) / (seen - self._seen))
        self._seen, self._total = seen, total


def degradation_experiment(
    data: Dataset,
    depths: Sequence[int] = (8, 20, 56),
    *,
    epochs: int = 1,
    recipe: str | Recipe = "fast",
    width: int = 16,
    seed: int = 0,
    verbose: int | str = 0,
) -> DegradationResult:
    """Train plain CIFAR-style nets and their residual twins at each depth, same budget.

    He et al. (2016), Figs. 1 and 6: deeper plain nets train worse, deeper residual nets
    do not. Every network gets the same data, epochs, recipe and seed.

    Args:
        data: the `Dataset` to train on (a `subset` keeps it quick).
        depths: CIFAR ResNet depths (6n+2) to compare.
        epochs: epochs each network trains.
        recipe: a name in `RECIPES` or a `Recipe`.
        width: the networks' base width.
        seed: the same seed for every network.
        verbose: Keras's `verbose` for each training.

    Example:
    >>> result = degradation_experiment(kr.load_dataset("mnist"), (8, 20))  # doctest: +SKIP
    >>> plot_degradation(result)  # doctest: +SKIP
    """
    _checks.positive_int("epochs", epochs)
    if not depths:
        raise ValueError("`depths` is empty: give at least one depth, e.g. (8, 20, 56).")
    recipe = get_recipe(recipe)
    result = DegradationResult()
    for depth in depths:
        for plain in (True, False):
            keras.backend.clear_session()
            keras.utils.set_random_seed(seed)
            model = resnet_cifar(
                depth, data.input_shape, data.num_classes, width=width, plain=plain
            )
            steps = _StepLosses(len(data.y_train), recipe.batch_size)
            started = time.perf_counter()
            history = train(
                model, data, epochs=epochs, recipe=recipe, seed=seed, verbose=verbose,
                callbacks=[steps],
            ).history  # fmt: skip
            seconds = time.perf_counter() - started
            result.curves[model.name] = {
                "step": list(range(1, len(steps.losses) + 1)),
                "loss": steps.losses,
                "history": history,
            }
            result.final.append(
                {
                    "kind": "plain" if plain else "residual",
                    "depth": depth,
                    "params": model.count_params(),
                    "train_loss": history["loss"][-1],
                    "train_accuracy": history["accuracy"][-1],
                    "val_loss": history["val_loss"][-1],
                    "val_accuracy": history["val_accuracy"][-1],
                    "test_accuracy": evaluate(model, data)["accuracy"],
                    "seconds": seconds,
                }
            )
    return result


def plot_degradation(result: DegradationResult, *, smooth: int = 25):
    """Training loss per step (moving average over `smooth` steps) of every network, plain
    dashed and residual solid, beside final validation accuracy against depth.
    Returns the matplotlib figure."""
    figure, (loss_ax, accuracy_ax) = new_figure(ncols=2)
    colors = {}
    # `final` holds one row per curve, in the same order: each network's kind and depth.
    for row, (name, curve) in zip(result.final, result.curves.items(), strict=True):
        color = colors.setdefault(row["depth"], f"C{len(colors)}")
        window = max(1, min(smooth, len(curve["loss"])))
        loss = np.convolve(curve["loss"], np.ones(window) / window, mode="valid")
        steps = curve["step"][window - 1 :]
        style = "--" if row["kind"] == "plain" else "-"
        loss_ax.plot(steps, loss, style, color=color, label=name)
    loss_ax.set(xlabel="training step", ylabel="training loss (moving average)", yscale="log")
    loss_ax.legend(fontsize=8)
    for kind, style in (("plain", "--o"), ("residual", "-o")):
        rows = [r for r in result.final if r["kind"] == kind]
        accuracy_ax.plot([r["depth"] for r in rows], [r["val_accuracy"] for r in rows], style,
                         label=kind)  # fmt: skip
    accuracy_ax.set(xlabel="depth (layers)", ylabel="final validation accuracy")
    accuracy_ax.legend()
    figure.tight_layout()
    return figure
