"""Training recipes as data, optimizers by name, and a `train` loop built on `model.fit`."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_residual import _checks
from keras_residual._files import check_output_dir, write_text_atomically
from keras_residual.data import FLIPS, Dataset, check_labels, labels_as_indices, make_pipeline
from keras_residual.techniques import (
    Lookahead,
    OneCycle,
    RateScaledSGD,
    check_tta,
    predict_with_tta,
)
from keras_residual.whitening import ADAPT_IMAGES, adapt_whitening, whitening_layers

SGD_OPTIMIZERS = ("sgd", "momentum", "nesterov")  # take `momentum` and rate multipliers
OPTIMIZERS = (*SGD_OPTIMIZERS, "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
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
        schedule: `"constant"`, `"step"` (x0.1 at each of `milestones`), `"cosine"`
            (to `anneal_to`, after `warmup_epochs` of linear warm-up) or `"onecycle"`
            (linear up for `warmup_epochs`, linear down to `anneal_to`: `OneCycle`).
        milestones: fractions of training where the step schedule divides by 10.
        warmup_epochs: epochs of linear warm-up from `warmup_from` of the peak (cosine,
            onecycle); at most 30% of a shorter run.
        warmup_from: the warm-up's first rate as a fraction of the peak.
        anneal_to: the last step's rate as a fraction of the peak (cosine, onecycle).
        momentum: of the SGD optimizers ("momentum", "nesterov").
        label_smoothing: of the cross-entropy, in [0, 1).
        decay_norm_and_bias: decay batch-norm scales/shifts and biases too.
        freeze_norm_scale: keep batch-norm scales at their initial 1 (airbench); the
            network then cannot use `zero_init_residual`. A network built with
            `Norm(scale=False)` (the speed family) has none: the same function, and it
            stays so in a saved model, whose reload does not know a frozen scale.
        norm_shift_rate: learning-rate multiplier of batch-norm shifts (SGD optimizers;
            airbench 64).
        lookahead: steps between `Lookahead` synchronisations (airbench 5; 0: off).
        ema: momentum of an exponential moving average of the weights (Keras's
            `use_ema`), used for validation and kept at the end; 0 turns it off.
        flip: horizontal flips, random (True), none (False) or airbench's `"alternate"`
            (a random half of the images in even epochs, the other half in odd ones);
            None: the dataset's default (CIFAR-10 random, MNIST none).
        translate: random shifts of up to this many pixels (pad and crop); None: the
            dataset's default (CIFAR-10 4, MNIST 0).
        cutout: side of a square erased at a random place in each image (0: none).
        tta: test-time augmentation of `evaluate`: `"none"`, `"flip"` or `"flip_translate"`.

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
    warmup_from: float = 0.1
    anneal_to: float = 0.0
    momentum: float = 0.9
    label_smoothing: float = 0.0
    decay_norm_and_bias: bool = False
    freeze_norm_scale: bool = False
    norm_shift_rate: float = 1.0
    lookahead: int = 0
    ema: float = 0.0
    flip: bool | str | None = None
    translate: int | None = None
    cutout: int = 0
    tta: str = "none"

    def __post_init__(self):
        _checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        _checks.choice("schedule", self.schedule, SCHEDULES)
        _checks.positive_int("batch_size", self.batch_size)
        _checks.positive_int("reference_batch", self.reference_batch)
        _checks.rate("label_smoothing", self.label_smoothing)
        _checks.positive("learning_rate", self.learning_rate)
        _checks.non_negative("weight_decay", self.weight_decay)
        _checks.non_negative("warmup_epochs", self.warmup_epochs)
        _checks.rate("warmup_from", self.warmup_from, allow_one=True)
        _checks.rate("anneal_to", self.anneal_to, allow_one=True)
        _checks.rate("momentum", self.momentum)
        _checks.flag("freeze_norm_scale", self.freeze_norm_scale)
        _checks.positive("norm_shift_rate", self.norm_shift_rate)
        _checks.non_negative_int("lookahead", self.lookahead)
        if self.norm_shift_rate != 1 and self.optimizer not in SGD_OPTIMIZERS:
            raise ValueError(
                f"`norm_shift_rate` needs an SGD optimizer (sgd, momentum, nesterov), "
                f"got optimizer={self.optimizer!r}."
            )
        for milestone in self.milestones:
            if not _checks.rate("milestones", milestone) > 0:
                raise ValueError(f"`milestones` must lie in (0, 1), got {self.milestones!r}.")
        _checks.flag("decay_norm_and_bias", self.decay_norm_and_bias)
        _checks.rate("ema", self.ema)
        if self.flip is not None:
            _checks.choice("flip", self.flip, FLIPS)
        if self.translate is not None:
            _checks.non_negative_int("translate", self.translate)
        _checks.non_negative_int("cutout", self.cutout)
        check_tta(self.tta)


class TrainingDiverged(RuntimeError):
    """Training reached a non-finite loss; no model was saved."""


RECIPES: dict[str, Recipe] = {
    # He et al. 2016, CIFAR: SGD momentum 0.9, lr 0.1 @ 128, wd 1e-4, /10 at 50% and 75%.
    # Keras decays decoupled from the momentum (w -= lr * wd * w each step), the paper's
    # Caffe added wd * w to the gradient, which momentum 0.9 sums to 10x: 1e-3 here.
    "he2016": Recipe(optimizer="momentum", learning_rate=0.1, weight_decay=1e-3),
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
    # The CIFAR-10 speed records' recipe (Page's ResNet-9, airbench): large batches, a
    # one-cycle schedule, label smoothing 0.2, 2-pixel shifts and flips, flip TTA; their
    # weight decay 5e-4 (added to the gradient, summed 10x by momentum) is 5e-3 here.
    "fast_cifar": Recipe(
        optimizer="nesterov",
        learning_rate=0.1,
        batch_size=512,
        weight_decay=5e-3,
        schedule="onecycle",
        warmup_epochs=2.0,
        label_smoothing=0.2,
        translate=2,
        tta="flip",
    ),
    # airbench94's recipe in Keras's terms, for the speed family's head (logits x 1/9,
    # max pooling). Its PyTorch SGD sums the loss over a batch of 1024 (lr 11.5/7851 per
    # example: 1.5 on the mean) and decays through the momentum (0.0133 a step at the
    # peak: 0.0089 decoupled); warm-up 23% from 0.2 of the peak, then down to 0.07;
    # frozen batch-norm scales, shifts 64x faster; Lookahead every 5 steps; alternating
    # flips; 6-view TTA.
    "airbench": Recipe(
        optimizer="nesterov",
        learning_rate=1.5,
        reference_batch=1024,
        batch_size=1024,
        momentum=0.85,
        weight_decay=0.0089,
        schedule="onecycle",
        warmup_epochs=2.3,
        warmup_from=0.2,
        anneal_to=0.07,
        label_smoothing=0.2,
        decay_norm_and_bias=True,
        freeze_norm_scale=True,
        norm_shift_rate=64.0,
        lookahead=5,
        flip="alternate",
        translate=2,
        tta="flip_translate",
    ),
}


def default_recipe(model: str) -> str:
    """The recipe a preset trains with unless told: `airbench` for the CIFAR-10 speed
    family (its head is tuned for that recipe's learning rate), else `fast`.

    Example:
    >>> default_recipe("fast_cifar_s"), default_recipe("resnet20")
    ('airbench', 'fast')
    """
    return "airbench" if str(model).startswith("fast_cifar") else "fast"


def get_recipe(recipe: str | Recipe, **overrides) -> Recipe:
    """A named recipe (or a `Recipe`) with `overrides` applied (None values ignored).

    Example:
    >>> get_recipe("fast", batch_size=256).batch_size
    256
    """
    if isinstance(recipe, str):
        recipe = RECIPES[_checks.choice("recipe", recipe, RECIPES)]
    fields = [f.name for f in dataclasses.fields(Recipe)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"Recipe has no field {', '.join(map(repr, unknown))}; its fields: {', '.join(fields)}."
        )
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


MAX_WARMUP_FRACTION = 0.3


def learning_rate_schedule(recipe: Recipe, steps_per_epoch: int, epochs: int):
    """The recipe's schedule as a Keras `LearningRateSchedule` (or a float)."""
    peak = recipe.learning_rate * recipe.batch_size / recipe.reference_batch
    total = max(1, steps_per_epoch * epochs)
    # A run shorter than the recipe was written for still anneals: warm-up takes at most
    # MAX_WARMUP_FRACTION of it (airbench 23%, Page's ResNet-9 21%).
    warmup = min(int(recipe.warmup_epochs * steps_per_epoch), int(MAX_WARMUP_FRACTION * total))
    if recipe.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            peak * recipe.warmup_from if warmup else peak,
            decay_steps=total - warmup,
            alpha=recipe.anneal_to,
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    if recipe.schedule == "onecycle":
        return OneCycle(peak, total, warmup, recipe.warmup_from, recipe.anneal_to)
    if recipe.schedule == "step":
        boundaries = sorted({max(1, int(m * total)) for m in recipe.milestones})
        values = [peak * 0.1**i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return peak


def make_optimizer(
    name: str,
    learning_rate,
    weight_decay: float = 0.0,
    ema: float = 0.0,
    momentum: float = 0.9,
    rate_multipliers: dict[str, float] | None = None,
) -> keras.optimizers.Optimizer:
    """An optimizer named as in the literature; weight decay is decoupled (Keras style);
    `ema` > 0 keeps Keras's moving average of the weights with that momentum; the SGD
    optimizers take `momentum` and per-variable-name `rate_multipliers` (`RateScaledSGD`).

    Example:
    >>> make_optimizer("nesterov", 0.1, 1e-4).nesterov
    True
    """
    _checks.choice("optimizer", name, OPTIMIZERS)
    _checks.rate("ema", ema)
    options = {"weight_decay": weight_decay or None, "use_ema": ema > 0}
    if ema > 0:
        options["ema_momentum"] = ema
    if name in SGD_OPTIMIZERS:
        sgd = {"momentum": 0.0 if name == "sgd" else momentum, "nesterov": name == "nesterov"}
        if rate_multipliers:
            return RateScaledSGD(rate_multipliers, learning_rate=learning_rate, **sgd, **options)
        return keras.optimizers.SGD(learning_rate, **sgd, **options)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, momentum=0.9, **options)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, **options)
    return keras.optimizers.AdamW(learning_rate, **{**options, "weight_decay": weight_decay})


def compile_model(
    model: keras.Model, recipe: Recipe, steps_per_epoch: int, epochs: int
) -> keras.Model:
    """Compile `model` for classification with one-hot labels, following `recipe`."""
    optimizer = make_optimizer(
        recipe.optimizer,
        learning_rate_schedule(recipe, steps_per_epoch, epochs),
        recipe.weight_decay,
        recipe.ema,
        recipe.momentum,
        {"beta": recipe.norm_shift_rate} if recipe.norm_shift_rate != 1 else None,
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


def make_pipelines(data: Dataset, recipe: Recipe, seed: int = 0, epoch: tf.Variable | None = None):
    """The (train, validation) pipelines `recipe` trains with (validation None when the
    data has no validation split); `epoch` as in `make_pipeline`."""
    augmentation = {"flip": recipe.flip, "translate": recipe.translate, "cutout": recipe.cutout}
    train_ds = make_pipeline(
        data, "train", recipe.batch_size, seed=seed, epoch=epoch, **augmentation
    )
    if not len(data.y_val):
        return train_ds, None
    return train_ds, make_pipeline(data, "val", max(recipe.batch_size, 256))


def progress_verbosity(verbose: int | str = "auto") -> int | str:
    """Keras's `verbose` with `"auto"` made 1 (the progress bar) where stdout redraws in
    place, a terminal or a notebook, and 2 (a line per epoch) elsewhere: in a log file
    Keras's bar writes a line per step.

    Example:
    >>> progress_verbosity(0)
    0
    """
    if verbose != "auto":
        return verbose
    redraws = getattr(sys.stdout, "isatty", lambda: False)() or _in_notebook()
    return 1 if redraws else 2


def _in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (not merely with ipykernel imported)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


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
            `best_model.keras` (best validation accuracy; training accuracy without a
            validation split), `last_model.keras` and
            `recipe.json`; None writes nothing.
        resume: continue the interrupted run in `out_dir` from its last finished epoch.
        seed: seeds weights, shuffling and augmentation.
        verbose: Keras's `verbose`; `"auto"` is the progress bar where it redraws in place
            (a terminal or a notebook) and one line per epoch elsewhere (a log file).
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
    epoch = _EpochOfData(initial_epoch)
    train_ds, val_ds = make_pipelines(data, recipe, seed, epoch.variable)
    callbacks = [epoch, *(callbacks or [])]
    if out_dir is not None:
        out, backup = _claim_run_folder(out_dir, model, recipe, resume), Path(out_dir) / "backup"
        callbacks += [
            keras.callbacks.BackupAndRestore(str(backup)),
            keras.callbacks.CSVLogger(str(out / "log.csv"), append=resume),
            keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False),
            _FiniteModelCheckpoint(
                str(out / "best_model.keras"),
                monitor="accuracy" if val_ds is None else "val_accuracy",
                save_best_only=True,
            ),
            _FiniteModelCheckpoint(str(out / "last_model.keras")),
        ]
    return _fit(
        model,
        recipe,
        math.ceil(len(data.y_train) / recipe.batch_size),
        data.normalize(data.x_train[:ADAPT_IMAGES]),
        x=train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,  # the pipeline shuffles, seeded
        callbacks=callbacks,
        verbose=verbose,
    )


class _EpochOfData(keras.callbacks.Callback):
    """Holds the epoch the training pipeline draws its order and augmentation for, set as
    each epoch begins: a resumed or continued run goes on with the epochs it reached."""

    def __init__(self, initial_epoch: int = 0):
        super().__init__()
        self.variable = tf.Variable(initial_epoch, dtype=tf.int64, trainable=False)

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


def _fit(model, recipe: Recipe, steps_per_epoch: int, sample_images, **fit_arguments):
    """Compile `model` for `recipe` and `fit` it: whitening layers set from `sample_images`
    (on a first epoch), the weights' moving average swapped in for validation, a
    non-finite loss raised as `TrainingDiverged`."""
    if fit_arguments["initial_epoch"] == 0 and sample_images is not None:
        adapt_whitening(model, sample_images)
    if recipe.freeze_norm_scale:
        freeze_norm_scales(model)
    compile_model(model, recipe, steps_per_epoch, fit_arguments["epochs"])
    # The moving average of the weights is what validation and checkpoints see.
    averaging = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if recipe.ema else []
    if recipe.lookahead:
        total = steps_per_epoch * fit_arguments["epochs"]
        averaging.append(Lookahead(total, every=recipe.lookahead))
    callbacks = [*averaging, *fit_arguments.pop("callbacks"), keras.callbacks.TerminateOnNaN()]
    verbose = progress_verbosity(fit_arguments.pop("verbose"))
    history = model.fit(callbacks=callbacks, verbose=verbose, **fit_arguments)
    losses = history.history.get("loss", [])
    if not losses or not math.isfinite(losses[-1]):
        raise TrainingDiverged(
            f"training diverged (loss {losses[-1] if losses else 'missing'}): lower the "
            "learning rate; no model was saved."
        )
    return history


def freeze_norm_scales(model: keras.Model) -> keras.Model:
    """Stop training the batch-norm scales (`gamma`) of `model`; airbench keeps them at 1.

    Raises:
        ValueError: a scale is zero (`zero_init_residual`): frozen, its block stays off.

    Example:
    >>> from keras_residual import resnet_cifar
    >>> model = freeze_norm_scales(resnet_cifar(8, (8, 8, 1), 2, width=4))
    >>> any(w.name == "gamma" for w in model.trainable_weights)
    False
    """
    scales = [w for w in model.weights if w.name == "gamma"]
    if any(not np.any(keras.ops.convert_to_numpy(w)) for w in scales):
        raise ValueError(
            "`freeze_norm_scale` would keep a zero-initialised batch-norm scale at zero "
            "(its residual block never turns on): build without `zero_init_residual`."
        )
    for scale in scales:
        scale.trainable = False
    return model


def fit_with_recipe(
    model: keras.Model,
    x,
    y=None,
    *,
    validation_data=None,
    epochs: int = 1,
    recipe: str | Recipe = "fast",
    seed: int = 0,
    verbose: int | str = "auto",
    callbacks: list | None = None,
    initial_epoch: int = 0,
    **fit_arguments,
) -> keras.callbacks.History:
    """Train `model` with `recipe` on data given as `model.fit` takes it: arrays `x`, `y`
    (integer or one-hot labels) or a `tf.data.Dataset` of `(images, labels)` batches, and
    `validation_data` likewise. Nothing is added to the inputs (no normalisation or
    augmentation: the model sees them as given, also after training); a whitening stem is
    set from the first images (of a dataset, from its first batches); the recipe's optimizer,
    schedule, loss, averaging and batch size (for arrays) apply.

    Raises:
        TrainingDiverged: the loss became non-finite.

    Example:
    >>> import numpy as np
    >>> from keras_residual import resnet_cifar
    >>> model = resnet_cifar(8, (8, 8, 1), 2, width=4)
    >>> x, y = np.random.default_rng(0).random((16, 8, 8, 1)), np.arange(16) % 2
    >>> fit_with_recipe(model, x, y, validation_data=(x, y), verbose=0).epoch
    [0]
    """
    _checks.positive_int("epochs", epochs)
    _checks.non_negative_int("initial_epoch", initial_epoch)
    recipe = get_recipe(recipe)
    classes = model.output_shape[-1]
    keras.utils.set_random_seed(seed)
    if isinstance(x, tf.data.Dataset):  # batched and shuffled by its maker, as fit expects
        sample = _first_images(x, ADAPT_IMAGES) if whitening_layers(model) else None
        x = _one_hot_batches(x, classes)
        fit_arguments.setdefault("shuffle", False)
        steps = int(x.cardinality())
        steps = steps if steps > 0 else sum(1 for _ in x)
    else:
        sample, steps = np.asarray(x[:ADAPT_IMAGES]), math.ceil(len(x) / recipe.batch_size)
        y, fit_arguments["batch_size"] = _one_hot(y, classes, "y"), recipe.batch_size
    if isinstance(validation_data, tf.data.Dataset):
        validation_data = _one_hot_batches(validation_data, classes)
    elif validation_data is not None:
        images, labels, *rest = validation_data
        validation_data = (images, _one_hot(labels, classes, "validation labels"), *rest)
    return _fit(
        model,
        recipe,
        steps,
        sample,
        x=x,
        y=y,
        validation_data=validation_data,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=list(callbacks or []),
        verbose=verbose,
        **fit_arguments,
    )


def _first_images(dataset: tf.data.Dataset, count: int) -> np.ndarray:
    """The images of a dataset of `(images, labels)` batches, its first `count` or fewer."""
    batches, taken = [], 0
    for images, *_ in dataset:
        batches.append(np.asarray(images))
        taken += len(batches[-1])
        if taken >= count:
            break
    return np.concatenate(batches)[:count]


def _one_hot(labels, classes: int, what: str) -> np.ndarray:
    labels = check_labels(what, labels_as_indices(what, labels), classes)
    return keras.utils.to_categorical(labels, classes)


def _one_hot_batches(dataset, classes: int):
    """`dataset`'s `(images, labels)` with integer labels made one-hot."""
    labels = dataset.element_spec[1]
    if labels.shape.rank and labels.shape[-1] == classes and labels.shape.rank > 1:
        return dataset
    return dataset.map(lambda x, y: (x, tf.one_hot(tf.reshape(y, [-1]), classes)))


def evaluate(
    model: keras.Model,
    data: Dataset,
    split: str = "test",
    batch_size: int = 256,
    tta: str = "none",
) -> dict[str, float]:
    """Loss and accuracy of `model` on a split, as a dict.

    `tta="flip"` averages the predictions on each image and its mirror image,
    `"flip_translate"` also on 1-pixel shifts (`predict_with_tta`); the loss is then the
    cross-entropy of the averaged prediction (a probability under 1e-12 counts as 1e-12).

    Example:
    >>> import numpy as np
    >>> x, y = np.zeros((4, 8, 8, 1), "uint8"), np.arange(4) % 2
    >>> data = Dataset("mnist", x, y, x, y, x, y, ("0", "1"))
    >>> from keras_residual import resnet_cifar
    >>> sorted(evaluate(resnet_cifar(8, data.input_shape, 2, width=4), data))
    ['accuracy', 'loss']
    """
    check_tta(tta, model)
    if tta != "none":
        labels = getattr(data, f"y_{split}")
        images = data.normalize(getattr(data, f"x_{split}"))
        probabilities = predict_with_tta(model, images, tta, batch_size)
        picked = probabilities[np.arange(len(labels)), labels]
        return {
            "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
            "loss": float(-np.mean(np.log(np.maximum(picked, 1e-12)))),
        }
    if not model.compiled:
        model.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    pipeline = make_pipeline(data, split, batch_size)
    return model.evaluate(pipeline, return_dict=True, verbose=0)
