"""Training recipes as data, optimizers by name, and a `train` loop built on `model.fit`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras

from keras_residual import _checks
from keras_residual._files import check_output_dir, write_text_atomically
from keras_residual.data import Dataset, make_pipeline

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
RUN_FILE = "run.json"  # the model and recipe of a train() run, checked on resume


@dataclass(frozen=True)
class Recipe:
    """How to train: optimizer, learning-rate schedule, regularisation and batch size.

    Args:
        optimizer: one of `OPTIMIZERS` (`make_optimizer` names them).
        learning_rate: the peak rate for `reference_batch` images; it scales linearly
            with `batch_size`.
        reference_batch: the batch size `learning_rate` is given for.
        batch_size: images per step.
        weight_decay: decoupled weight decay (kernels only unless `decay_norm_and_bias`).
        schedule: `"constant"`, `"step"` (x0.1 at each of `milestones`) or `"cosine"`
            (to zero, after `warmup_epochs` of linear warm-up).
        milestones: fractions of training where the step schedule divides by 10.
        warmup_epochs: epochs of linear warm-up from a tenth of the peak (cosine).
        label_smoothing: of the cross-entropy, in [0, 1).
        decay_norm_and_bias: decay batch-norm scales/shifts and biases too.

    Example:
    >>> Recipe(learning_rate=0.05, batch_size=256).learning_rate
    0.05
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
        _checks.positive_int("reference_batch", self.reference_batch)
        _checks.rate("label_smoothing", self.label_smoothing)
        _checks.positive("learning_rate", self.learning_rate)
        _checks.non_negative("weight_decay", self.weight_decay)
        _checks.non_negative("warmup_epochs", self.warmup_epochs)
        for milestone in self.milestones:
            if not _checks.rate("milestones", milestone) > 0:
                raise ValueError(f"`milestones` must lie in (0, 1), got {self.milestones!r}.")
        _checks.flag("decay_norm_and_bias", self.decay_norm_and_bias)


class TrainingDiverged(RuntimeError):
    """Training reached a non-finite loss; no model was saved."""


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
    """A named recipe (or a `Recipe`) with `overrides` applied (None values ignored).

    Example:
    >>> get_recipe("fast", batch_size=256).batch_size
    256
    """
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


def make_pipelines(data: Dataset, recipe: Recipe, seed: int = 0):
    """The (train, validation) pipelines `recipe` trains with."""
    train_ds = make_pipeline(data, "train", recipe.batch_size, seed=seed)
    return train_ds, make_pipeline(data, "val", max(recipe.batch_size, 256))


class _FiniteModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """A `ModelCheckpoint` that never saves a model whose epoch ended non-finite."""

    def on_epoch_end(self, epoch, logs=None):
        if math.isfinite((logs or {}).get("loss", 0.0)):
            super().on_epoch_end(epoch, logs)


def _architecture(model: keras.Model) -> dict:
    """What identifies a model's architecture for resuming: its name and layers."""
    layers = [[type(layer).__name__, layer.count_params()] for layer in model.layers]
    return {"model": model.name, "layers": layers}


def _claim_run_folder(out_dir, model: keras.Model, recipe: Recipe, resume: bool) -> Path:
    """Make `out_dir` this run's folder; refuse another run's interrupted backup or, on
    resume, a different model or recipe (the run's files are left as they are)."""
    out = Path(out_dir)
    run = {"architecture": _architecture(model), "recipe": asdict(recipe)}
    run = json.loads(json.dumps(run))  # as it reads back from run.json: lists for tuples
    if (out / "backup").exists() and not resume:
        raise FileExistsError(
            f"{out} holds an interrupted run: pass resume=True (--resume) to continue it, "
            "or choose another output directory."
        )
    if resume and (out / RUN_FILE).exists():
        previous = json.loads((out / RUN_FILE).read_text())
        if previous["architecture"] != run["architecture"]:
            raise ValueError(
                f"{out} holds a run of model {previous['architecture']['model']!r}, not of "
                f"{model.name!r} with these layers: resume it with the same --model, or choose "
                "another output directory."
            )
        changed = sorted(k for k, v in run["recipe"].items() if previous["recipe"].get(k) != v)
        if changed:
            raise ValueError(
                f"{out} holds a run with another recipe ({', '.join(changed)} differ): resume "
                "it with the run's own settings (see its recipe.json)."
            )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / RUN_FILE, json.dumps(run, indent=2))
    write_text_atomically(out / "recipe.json", json.dumps(run["recipe"], indent=2))
    return out


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
    initial_epoch: int = 0,
) -> keras.callbacks.History:
    """Train `model` on `data` with `recipe`; evaluate nothing on the test set.

    Args:
        model: a Keras model with one-hot classification outputs.
        data: a `Dataset` (its train and validation splits are used).
        epochs: epochs to train (the schedule spans them).
        recipe: a name in `RECIPES` or a `Recipe`.
        out_dir: where to write `log.csv`, TensorBoard logs in `tensorboard/`,
            `best_model.keras` (best validation accuracy), `last_model.keras` and
            `recipe.json`; None writes nothing.
        resume: continue the interrupted run in `out_dir` from its last finished epoch.
        seed: seeds weights, shuffling and augmentation.
        verbose: Keras's `verbose`.
        callbacks: more Keras callbacks.
        initial_epoch: the epoch to start from (continuing a model trained before).

    Raises:
        TrainingDiverged: the loss became non-finite; no model file is saved.

    Example:
    >>> import numpy as np
    >>> x, y = np.zeros((8, 8, 8, 1), "uint8"), np.arange(8) % 2
    >>> data = Dataset("mnist", x, y, x, y, x, y, ("0", "1"))
    >>> from keras_residual import resnet_cifar
    >>> model = resnet_cifar(8, data.input_shape, 2, width=4)
    >>> train(model, data, epochs=1, recipe="fast", verbose=0).epoch
    [0]
    """
    _checks.positive_int("epochs", epochs)
    _checks.non_negative_int("initial_epoch", initial_epoch)
    recipe = get_recipe(recipe)
    if out_dir is not None:
        check_output_dir(out_dir, "out_dir")
    keras.utils.set_random_seed(seed)
    train_ds, val_ds = make_pipelines(data, recipe, seed)
    compile_model(model, recipe, math.ceil(len(data.y_train) / recipe.batch_size), epochs)
    callbacks = [*(callbacks or []), keras.callbacks.TerminateOnNaN()]
    if out_dir is not None:
        out, backup = _claim_run_folder(out_dir, model, recipe, resume), Path(out_dir) / "backup"
        callbacks += [
            keras.callbacks.BackupAndRestore(str(backup)),
            keras.callbacks.CSVLogger(str(out / "log.csv"), append=resume),
            keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False),
            _FiniteModelCheckpoint(
                str(out / "best_model.keras"), monitor="val_accuracy", save_best_only=True
            ),
            _FiniteModelCheckpoint(str(out / "last_model.keras")),
        ]
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,  # the pipeline shuffles, seeded
        callbacks=callbacks,
        verbose=verbose,
    )
    losses = history.history.get("loss", [])
    if not losses or not math.isfinite(losses[-1]):
        raise TrainingDiverged(
            f"training diverged (loss {losses[-1] if losses else 'missing'}): lower the "
            "learning rate; no model was saved."
        )
    return history


def evaluate(model: keras.Model, data: Dataset, split: str = "test", batch_size: int = 256):
    """Loss and accuracy of `model` on a split, as a dict.

    Example:
    >>> import numpy as np
    >>> x, y = np.zeros((4, 8, 8, 1), "uint8"), np.arange(4) % 2
    >>> data = Dataset("mnist", x, y, x, y, x, y, ("0", "1"))
    >>> from keras_residual import resnet_cifar
    >>> sorted(evaluate(resnet_cifar(8, data.input_shape, 2, width=4), data))
    ['accuracy', 'loss']
    """
    if not model.compiled:
        model.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    pipeline = make_pipeline(data, split, batch_size)
    return model.evaluate(pipeline, return_dict=True, verbose=0)
