"""The training loop: `train` (a `Dataset`, resumable in a run folder), `fit_with_recipe`
(data as `model.fit` takes it) and `evaluate`, built on `model.fit`.

Recipes are data in `recipes`, schedules and optimizers in `optimizers`, the run folder's
files in `run_folder`; their names stay importable from here.
"""

from __future__ import annotations

import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_residual import _checks
from keras_residual._files import check_output_dir, folder_lock
from keras_residual.data import Dataset, check_labels, labels_as_indices, make_pipeline
from keras_residual.optimizers import (  # noqa: F401 (importable from here, as before)
    MAX_WARMUP_FRACTION,
    MOST_STRETCH,
    ScheduleOverTime,
    compile_model,
    learning_rate_schedule,
    make_optimizer,
    schedule_callbacks,
)
from keras_residual.presets import default_recipe  # noqa: F401 (importable from here)
from keras_residual.recipes import (  # noqa: F401 (importable from here, as before)
    OPTIMIZERS,
    RECIPES,
    SCHEDULES,
    SGD_OPTIMIZERS,
    Recipe,
    get_recipe,
)
from keras_residual.run_folder import (  # noqa: F401 (RUN_FILE, RunFinished: as before)
    RUN_FILE,
    RunFinished,
    RunState,
    claim_run_folder,
)
from keras_residual.techniques import Lookahead, check_tta, predict_with_tta
from keras_residual.whitening import ADAPT_IMAGES, adapt_whitening, whitening_layers


class TrainingDiverged(RuntimeError):
    """Training reached a non-finite loss; no model was saved."""


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


def train(
    model: keras.Model,
    data: Dataset,
    *,
    epochs: int = 1,
    recipe: str | Recipe = "fast",
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    verbose: int | str = "auto",
    callbacks: list | None = None,
    initial_epoch: int = 0,
    seconds: float | None = None,
) -> keras.callbacks.History:
    """Train `model` on `data` with `recipe`; evaluate nothing on the test set.

    Args:
        model: a Keras model with one-hot classification outputs.
        data: a `Dataset` (its train and validation splits are used).
        epochs: epochs to train (the schedule spans them).
        recipe: a name in `RECIPES` or a `Recipe`.
        out_dir: where to write `log.csv`, TensorBoard logs in `tensorboard/`,
            `best_model.keras` (best validation accuracy; training accuracy without a
            validation split), `last_model.keras`, `recipe.json`, `run.json` and the
            state to resume from in `backup/`; None writes nothing. A folder holding
            another run is refused unless `resume` or `overwrite` is given; one that
            another live process is writing is refused with that process's id.
        resume: continue the run in `out_dir` from its last finished epoch: an
            interrupted run, or a finished one to a larger `epochs` (the schedule is
            then planned for the new total). A run that has trained `epochs` already
            raises `RunFinished`, changing nothing.
        overwrite: replace the run in `out_dir` (its files only) with a new one.
        seed: seeds shuffling, augmentation and layers such as dropout; `model`'s weights
            were drawn when it was built (`keras.utils.set_random_seed` before building
            fixes them, as `keras-residual train --seed` does).
        verbose: Keras's `verbose`; `"auto"` is the progress bar where it redraws in place
            (a terminal or a notebook) and one line per epoch elsewhere (a log file).
        callbacks: more Keras callbacks.
        initial_epoch: the epoch to start from (continuing a model trained before).
        seconds: train for this long from the call, however fast the steps run: the
            schedule planned for `epochs` is stretched or shrunk over the time, and the
            run ends when it does, after more or fewer epochs (at most `MOST_STRETCH`
            times `epochs`; the last may be partial). For a budget whose pace is known
            roughly (`ScheduleOverTime`); not with `initial_epoch`. A paced run's
            folder keeps its models and log as any other, but the run does not resume:
            its schedule followed the clock.

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
    _check_seconds(seconds, initial_epoch)
    recipe = get_recipe(recipe)
    if out_dir is None:
        if resume or overwrite:
            flag = "resume" if resume else "overwrite"
            raise ValueError(f"`{flag}` needs `out_dir` (--out): the folder of the run.")
        options = (seed, verbose, callbacks or [], initial_epoch, _deadline(seconds))
        return _train(model, data, epochs, recipe, *options)
    if resume and seconds is not None:
        raise ValueError(
            "`seconds` paces a run from its start: a run paced to a time does not resume."
        )
    if resume and overwrite:
        raise ValueError("`resume` and `overwrite` exclude each other: continue or replace.")
    check_output_dir(out_dir, "out_dir")
    with folder_lock(out_dir, "out_dir"):
        out = claim_run_folder(out_dir, model, recipe, epochs, resume, overwrite, seconds)
        monitor = "val_accuracy" if len(data.y_val) else "accuracy"
        files = [
            RunState(out, monitor),
            keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False),
        ]
        callbacks = [*files, *(callbacks or [])]
        options = (seed, verbose, callbacks, initial_epoch, _deadline(seconds))
        return _train(model, data, epochs, recipe, *options)


def epochs_trained(model: keras.Model) -> float:
    """The epochs a model's last `fit` trained, to a hundredth (a paced run's last may be
    partial)."""
    return round(int(model.optimizer.iterations) / model.history.params["steps"], 2)


def _check_seconds(seconds, initial_epoch: int) -> None:
    _checks.non_negative_int("initial_epoch", initial_epoch)
    if seconds is None:
        return
    _checks.positive("seconds", seconds)
    if initial_epoch:
        raise ValueError(
            f"`seconds` paces a run from its start; got `initial_epoch`={initial_epoch}."
        )


def _deadline(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds


def _train(model, data, epochs, recipe, seed, verbose, callbacks, initial_epoch, deadline=None):
    keras.utils.set_random_seed(seed)
    recipe = recipe.for_examples(len(data.y_train))
    epoch = _EpochOfData(initial_epoch)
    train_ds, val_ds = make_pipelines(data, recipe, seed, epoch.variable)
    return _fit(
        model,
        recipe,
        math.ceil(len(data.y_train) / recipe.batch_size),
        data.normalize(data.x_train[:ADAPT_IMAGES]),
        deadline,
        x=train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,  # the pipeline shuffles, seeded
        callbacks=[epoch, *callbacks],
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


def _fit(model, recipe: Recipe, steps_per_epoch: int, sample_images, deadline, **fit_arguments):
    """Compile `model` for `recipe` and `fit` it: whitening layers that no data has set yet
    adapted to `sample_images` (on a first epoch), the weights' moving average swapped in for
    validation, a non-finite loss raised as `TrainingDiverged`. Given a `deadline`
    (`time.monotonic()`), the run ends then (`ScheduleOverTime`), its schedule planned for
    `epochs`."""
    if fit_arguments["initial_epoch"] == 0 and sample_images is not None:
        adapt_whitening(model, sample_images, keep_adapted=True)
    if recipe.freeze_norm_scale:
        freeze_norm_scales(model)
    epochs = fit_arguments["epochs"]
    total = steps_per_epoch * epochs
    compile_model(model, recipe, steps_per_epoch, epochs, paced=deadline is not None)
    pacing = []
    if deadline is not None:
        fit_arguments["epochs"] = MOST_STRETCH * epochs
        schedule = learning_rate_schedule(recipe, steps_per_epoch, epochs)
        most = steps_per_epoch * fit_arguments["epochs"]
        pacing.append(ScheduleOverTime(deadline, schedule, total, most))
    # The moving average of the weights is what validation and checkpoints see.
    averaging = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if recipe.ema else []
    if recipe.lookahead:
        clock = pacing[0].clock if pacing else None
        averaging.append(Lookahead(total, every=recipe.lookahead, clock=clock))
    callbacks = [*pacing, *averaging, *schedule_callbacks(recipe)]
    callbacks += fit_arguments.pop("callbacks")
    callbacks.append(keras.callbacks.TerminateOnNaN())
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
    seconds: float | None = None,
    **fit_arguments,
) -> keras.callbacks.History:
    """Train `model` with `recipe` on data given as `model.fit` takes it.

    Nothing is added to the inputs (no normalisation or augmentation: the model sees them
    as given, also after training); a whitening stem is set from the first images (of a
    dataset, from its first batches); the recipe's optimizer, schedule, loss, averaging
    and batch size (for arrays) apply.

    Args:
        model: a Keras model with one output per class.
        x: images as an array, or a `tf.data.Dataset` of `(images, labels)` batches.
        y: integer or one-hot labels of array `x` (None for a dataset).
        validation_data: `(x, y)` arrays or a dataset, as for `x`.
        epochs: epochs to train (the schedule spans them).
        recipe: a name in `RECIPES` or a `Recipe`.
        seed: seeds the weights' initialisation and Keras's shuffling.
        verbose: Keras's `verbose` (`"auto"`: see `train`).
        callbacks: more Keras callbacks.
        initial_epoch: the epoch to start from (continuing a model trained before).
        seconds: train for this long, the schedule stretched over it (see `train`).
        **fit_arguments: passed to `model.fit`.

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
    _check_seconds(seconds, initial_epoch)
    deadline = _deadline(seconds)
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
        recipe = recipe.for_examples(len(x))
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
        deadline,
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

    Args:
        model: a trained Keras model with one output per class.
        data: the `Dataset` (normalised as the pipelines feed it).
        split: `"test"`, `"val"` or `"train"`.
        batch_size: images per prediction batch.
        tta: test-time augmentation: `"none"`; `"flip"` averages the predictions on each
            image and its mirror image; `"flip_translate"` also on 1-pixel shifts
            (`predict_with_tta`). The loss is then the cross-entropy of the averaged
            prediction (a probability under 1e-12 counts as 1e-12).

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
