"""Training recipes as data, optimizers by name, and a `train` loop built on `model.fit`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras

from keras_residual import _checks
from keras_residual.data import Dataset, make_pipeline

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class Recipe:
    """How to train: optimizer, learning-rate schedule, regularisation and batch size.

    `learning_rate` is for `reference_batch` images and scales linearly with the batch.
    """

    optimizer: str = "nesterov"
    learning_rate: float = 0.1
    reference_batch: int = 128
    batch_size: int = 128
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    decay_norm_and_bias: bool = False

    def __post_init__(self):
        _checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        _checks.choice("schedule", self.schedule, SCHEDULES)
        _checks.positive_int("batch_size", self.batch_size)
        _checks.rate("label_smoothing", self.label_smoothing)
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be positive, got {self.learning_rate!r}.")
        if self.weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {self.weight_decay!r}.")


RECIPES: dict[str, Recipe] = {
    # He et al. 2016, CIFAR: SGD momentum 0.9, lr 0.1 @ 128, wd 1e-4, /10 at 50% and 75%.
    "he2016": Recipe(optimizer="momentum", learning_rate=0.1, weight_decay=1e-4),
    # Short budgets: Nesterov, linear warm-up then cosine to zero, label smoothing.
    "fast": Recipe(
        optimizer="nesterov",
        learning_rate=0.2,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=0.3,
        label_smoothing=0.1,
    ),
    # Adaptive optimizer with decoupled weight decay (Loshchilov & Hutter, 2019).
    "adamw": Recipe(
        optimizer="adamw",
        learning_rate=2e-3,
        weight_decay=0.05,
        schedule="cosine",
        warmup_epochs=0.3,
        label_smoothing=0.1,
    ),
}


def get_recipe(recipe: str | Recipe, **overrides) -> Recipe:
    """A named recipe (or a `Recipe`) with `overrides` applied (None values ignored)."""
    if isinstance(recipe, str):
        recipe = RECIPES[_checks.choice("recipe", recipe, RECIPES)]
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


def learning_rate_schedule(recipe: Recipe, steps_per_epoch: int, epochs: int):
    """The recipe's schedule as a Keras `LearningRateSchedule` (or a float)."""
    peak = recipe.learning_rate * recipe.batch_size / recipe.reference_batch
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total - 1, int(recipe.warmup_epochs * steps_per_epoch))
    if recipe.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            peak / 10 if warmup else peak,
            decay_steps=total - warmup,
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    if recipe.schedule == "step":
        boundaries = sorted({max(1, int(m * total)) for m in recipe.milestones})
        values = [peak * 0.1**i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return peak


def make_optimizer(
    name: str, learning_rate, weight_decay: float = 0.0
) -> keras.optimizers.Optimizer:
    """An optimizer named as in the literature; weight decay is decoupled (Keras style).

    Example:
    >>> make_optimizer("nesterov", 0.1, 1e-4).nesterov
    True
    """
    _checks.choice("optimizer", name, OPTIMIZERS)
    decay = {"weight_decay": weight_decay or None}
    if name in ("sgd", "momentum", "nesterov"):
        momentum = 0.0 if name == "sgd" else 0.9
        return keras.optimizers.SGD(
            learning_rate, momentum=momentum, nesterov=name == "nesterov", **decay
        )
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, momentum=0.9, **decay)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, **decay)
    return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)


def compile_model(
    model: keras.Model, recipe: Recipe, steps_per_epoch: int, epochs: int
) -> keras.Model:
    """Compile `model` for classification with one-hot labels, following `recipe`."""
    optimizer = make_optimizer(
        recipe.optimizer,
        learning_rate_schedule(recipe, steps_per_epoch, epochs),
        recipe.weight_decay,
    )
    if not recipe.decay_norm_and_bias:  # decay kernels only, not BN scales/shifts or biases
        optimizer.exclude_from_weight_decay(
            var_list=[w for w in model.trainable_weights if len(w.shape) <= 1]
        )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"],
    )
    return model


def prepare(model: keras.Model, data: Dataset, recipe: Recipe, epochs: int, seed: int = 0):
    """Compile `model` for `recipe` and return its (train, validation) pipelines."""
    train_ds = make_pipeline(data, "train", recipe.batch_size, seed=seed)
    val_ds = make_pipeline(data, "val", max(recipe.batch_size, 256))
    compile_model(model, recipe, math.ceil(len(data.y_train) / recipe.batch_size), epochs)
    return train_ds, val_ds


def train(
    model: keras.Model,
    data: Dataset,
    *,
    epochs: int = 1,
    recipe: str | Recipe = "fast",
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    seed: int = 0,
    verbose: int | str = "auto",
    callbacks: list | None = None,
) -> keras.callbacks.History:
    """Train `model` on `data` with Keras progress bars; evaluate nothing on the test set.

    With `out_dir`: `log.csv`, TensorBoard logs in `tensorboard/`, `best_model.keras`
    (best validation accuracy), `last_model.keras` and `recipe.json`. An interrupted run
    resumes from its last finished epoch with `resume=True` (`BackupAndRestore`).

    Example:
    >>> import keras_residual as kr  # doctest: +SKIP
    >>> data = kr.load_dataset("mnist")  # doctest: +SKIP
    >>> kr.train(kr.build("resnet20", data.input_shape), data, epochs=1)  # doctest: +SKIP
    """
    _checks.positive_int("epochs", epochs)
    recipe = get_recipe(recipe)
    keras.utils.set_random_seed(seed)
    train_ds, val_ds = prepare(model, data, recipe, epochs, seed)
    callbacks = list(callbacks or [])
    if out_dir is not None:
        out = Path(out_dir)
        backup = out / "backup"
        if backup.exists() and not resume:
            raise FileExistsError(
                f"{out} holds an interrupted run: pass resume=True (--resume) to continue it, "
                "or choose another output directory."
            )
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
        callbacks += [
            keras.callbacks.BackupAndRestore(str(backup)),
            keras.callbacks.CSVLogger(str(out / "log.csv"), append=resume),
            keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False),
            keras.callbacks.ModelCheckpoint(
                str(out / "best_model.keras"), monitor="val_accuracy", save_best_only=True
            ),
            keras.callbacks.ModelCheckpoint(str(out / "last_model.keras")),
        ]
    return model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        shuffle=False,  # the pipeline shuffles, seeded
        callbacks=callbacks,
        verbose=verbose,
    )


def evaluate(model: keras.Model, data: Dataset, split: str = "test", batch_size: int = 256):
    """Loss and accuracy of `model` on a split, as a dict."""
    if not model.compiled:
        model.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    pipeline = make_pipeline(data, split, batch_size)
    return model.evaluate(pipeline, return_dict=True, verbose=0)
