"""A trial's training and timing: the constraints and time-limit checks before it trains
(a probe where the cost model extrapolates), the fit itself, and the record the search keeps
(best metrics, parameters, FLOPs, steady seconds per image and per validation pass)."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace

import keras
import keras_tuner
import numpy as np

from keras_residual.data import Dataset
from keras_residual.flops import count_flops
from keras_residual.search.budget import PROBE_GAIN, TimeLimit, Timing
from keras_residual.search.incumbent import Incumbent
from keras_residual.training import TrainingDiverged, fit_with_recipe, train

# What a trial refused before it trains says, by the status its results row then takes:
# over a constraint, or too slow for the time left (or unable to replace the preset).
NOT_TRAINED = {"rejected": "rejected before training", "skipped": "skipped before training"}
PROBE_STEPS = 2  # steps timed (after the first) of a network whose forecast extrapolates
HALFWAY = "halfway_val_accuracy"  # a trial's score at the end of half its epochs
STOPPED = "stopped_behind"  # the preset's halfway score, where a trial stopped behind it


def fit_trial(
    hypermodel,
    hp,
    model,
    x,
    y=None,
    *,
    epochs: int = 1,
    callbacks=(),
    time_limit: TimeLimit | None = None,
    trial_seconds: float | None = None,
    incumbent: Incumbent | None = None,
    halving: bool = False,
    **kwargs,
):
    """Train a trial's model: on a `Dataset` with `train` (the toolkit's pipelines),
    else on `x`, `y`, `validation_data` as `model.fit` takes them with
    `fit_with_recipe`. Returns the trial's record: the best of each metric over the
    epochs, parameters, FLOPs, seconds and the next epoch. A network over the
    constraints, (given a `time_limit`) too slow for the time left, or (given the
    `incumbent` the search started from) unable to replace it, fails before it
    trains. Given `trial_seconds`, it trains for that long (`equal_time_plan`: at least
    `epochs`, each of as many of the training images as the time holds), at its timing
    as the cost model forecasts it, or as a probe measures it outside the networks
    timed. With `halving`, those epochs are even and the score at the end of half of them
    is recorded (`halfway_val_accuracy`); a trial then behind the `incumbent` at the
    same point of its own trial by more than the noise stops there
    (`Incumbent.behind_at_half`; `stopped_behind` records the preset's score)."""
    params, flops = model.count_params(), count_flops(model)
    why = hypermodel.over_budget(params, flops)
    if why:
        raise keras_tuner.errors.FailedTrialError(f"{NOT_TRAINED['rejected']}: {why}")
    why = incumbent and incumbent.cannot_replace(flops)
    if why:
        raise keras_tuner.errors.FailedTrialError(f"{NOT_TRAINED['skipped']}: {why}")
    recipe = hypermodel.recipe_for(hp)
    if "batch_size" in kwargs:  # a keras-tuner user's fixed batch size
        recipe = replace(recipe, batch_size=kwargs.pop("batch_size"))
    examples = _examples(x)
    if examples is not None:  # the batch a fraction of the training set makes: costs are per it
        recipe = recipe.for_examples(examples)
    timing = None  # the network's cost as a probe measured it, where one did
    if trial_seconds and examples is not None:  # as many epochs as fit: equal time
        if _worth_timing(time_limit, flops, trial_seconds, epochs, examples):
            timing, time_limit = _probed(hypermodel, hp, x, y, recipe, flops, time_limit)
        planned = timing or (time_limit and time_limit.cost.timing(flops))
        if planned:
            least = min(examples, recipe.batch_size)
            epochs, images = equal_time_plan(
                trial_seconds, epochs, examples, planned, least, multiple=2 if halving else 1
            )
            time_limit = time_limit and replace(
                time_limit, trial_epochs=epochs, trial_images=images
            )
            x, y = _drawn(x, y, images)
            if kwargs.get("verbose", "auto"):
                print(
                    f"Training {model.name} for {epochs} epoch{'s' * (epochs != 1)} of "
                    f"{images:,} images, about {planned.epoch_seconds(images):.0f} s each "
                    f"({trial_seconds:.0f} s a trial)"
                )
            examples = images
    why = time_limit and time_limit.check(flops, timing)
    if why and timing is None and time_limit.worth_probing(flops):
        timing, time_limit = _probed(hypermodel, hp, x, y, recipe, flops, time_limit)
        if timing is not None:
            why = time_limit.check(flops, timing)
            if kwargs.get("verbose", "auto"):
                forecast = time_limit.cost.timing(flops).per_image
                print(
                    f"Timed {PROBE_STEPS} steps of {model.name}: {timing.per_image * 1e3:.2f} "
                    f"ms an image (forecast {forecast * 1e3:.2f}); "
                    + ("skipping it." if why else "training it.")
                )
            why = why and f"{why} (timed over {PROBE_STEPS} steps)"
    if why:
        raise keras_tuner.errors.FailedTrialError(f"{NOT_TRAINED['skipped']}: {why}")
    verbose = kwargs.pop("verbose", "auto")
    halfway = _Halfway(epochs if halving else 0, incumbent, _validated(x, kwargs), verbose)
    common = {
        "epochs": epochs,
        "recipe": recipe,
        "seed": kwargs.pop("seed", 0),
        "verbose": verbose,
        "callbacks": [*callbacks, steady := _SteadyTime(), halfway],
        "initial_epoch": kwargs.pop("initial_epoch", 0),
        "seconds": kwargs.pop("seconds", None),  # a retraining paced to the time left
    }
    start = time.perf_counter()
    try:
        if isinstance(x, Dataset):
            history = train(model, x, **common)
        else:
            history = fit_with_recipe(model, x, y, **common, **kwargs)
    except TrainingDiverged as error:
        raise keras_tuner.errors.FailedTrialError(str(error)) from None
    fit_seconds = time.perf_counter() - start
    best = {
        name: (min if "loss" in name else max)(
            [v for v in values if math.isfinite(v)], default=math.inf * ("loss" in name)
        )
        for name, values in history.history.items()
        if name != "learning_rate"
    }
    record = {
        **best,
        "params": params,
        "flops": flops,
        "fit_seconds": fit_seconds,
        "next_epoch": history.epoch[-1] + 1,
    }
    if examples is not None:
        record["train_examples"] = examples
    if halfway.score is not None:
        record[HALFWAY] = halfway.score
    if halfway.stopped:
        record[STOPPED] = incumbent.halfway
    if steady.steps:  # the cost of more training: per image, validation, epoch; to start
        epochs = len(history.epoch)
        record["seconds_per_image"] = steady.seconds / (steady.steps * recipe.batch_size)
        record["validation_seconds"] = steady.validation
        record["epoch_overhead_seconds"] = steady.per_epoch
        steady_total = steady.seconds + (steady.validation + steady.per_epoch) * epochs
        record["overhead_seconds"] = max(0.0, fit_seconds - steady_total)
    return record


def equal_time_plan(
    seconds: float,
    epochs: int,
    examples: int,
    timing: Timing,
    least: int = 1,
    multiple: int = 1,
) -> tuple[int, int]:
    """The epochs (at least `epochs`; a `multiple` of that), and the images of each (of
    `examples`; at least `least`, a batch), in which a network of `timing` trains for
    `seconds`, its validation passes included: whole epochs, or more of fewer images
    each (no fewer than `least`), whichever trains on more images in all. So a network
    trains as long as any other, not up to an epoch less or more: whole epochs would give
    one of 14 s an epoch 14 s of a 25 s trial, and one of 40 s all 40.

    Example:
    >>> timing = Timing(overhead=3.0, per_image=1e-3, validation=2.0)  # 12 s an epoch
    >>> equal_time_plan(25.0, 1, 10_000, timing)
    (2, 10000)
    >>> equal_time_plan(17.0, 1, 10_000, timing)  # two epochs of 8.5 s, not one of 12
    (2, 6500)
    >>> equal_time_plan(6.0, 1, 10_000, timing)  # slower than the time: part of an epoch
    (1, 4000)
    >>> equal_time_plan(25.0, 1, 10_000, timing, multiple=2)  # halves: an even count
    (2, 10000)
    >>> equal_time_plan(30.0, 1, 10_000, timing, multiple=2)  # not 3 of 10,000: 4 of 5,500
    (4, 5500)
    """
    epoch = timing.epoch_seconds(examples)
    if epoch <= 0 or timing.per_image <= 0:  # nothing to plan with
        return epochs, examples

    def images(count: int) -> float:
        each = (seconds / count - timing.validation - timing.per_epoch) / timing.per_image
        return min(examples, each)

    epochs, whole = multiple * math.ceil(epochs / multiple), seconds / epoch
    counts = {max(epochs, multiple * f(whole / multiple)) for f in (math.floor, math.ceil)}
    fitting = [c for c in sorted(counts) if images(c) >= least] or [min(counts)]
    count = max(fitting, key=lambda c: c * images(c))
    return count, int(max(least, images(count)))


def _worth_timing(time_limit, flops: float, seconds: float, epochs: int, examples: int) -> bool:
    """Whether an equal-time trial's network is worth a probe to plan its epochs: with no
    cost model yet, or outside the networks timed where, `PROBE_GAIN` times quicker than
    forecast, it would train more than `epochs` in `seconds`."""
    if time_limit is None:
        return True
    if time_limit.covers(flops):
        return False
    quicker = time_limit.cost.timing(flops).faster(PROBE_GAIN)
    return equal_time_plan(seconds, epochs, examples, quicker)[0] > epochs


def _probed(hypermodel, hp, x, y, recipe, flops: float, time_limit: TimeLimit | None):
    """The trial network's `Timing` over a few steps (`probe`; None where none could be
    timed) and the `time_limit` left once they are spent. Without a limit's cost model, a
    validation pass is estimated as a third of training on as many images (a forward
    pass of three)."""
    started = time.perf_counter()
    per_image = probe(hypermodel, hp, x, y, recipe)
    if per_image is None:
        return None, time_limit
    if time_limit is not None:
        return time_limit.probed(flops, per_image, time.perf_counter() - started)
    validated = len(x.y_val) if isinstance(x, Dataset) else 0
    return Timing(0.0, per_image, per_image * validated / 3), None


def probe(hypermodel, hp, x, y, recipe) -> float | None:
    """Seconds per training image of a fresh copy of the trial's network over
    `PROBE_STEPS` steps after the first (tracing), on the first images of `x`; None
    where `x` is not a `Dataset` or arrays, or too few images for a step to time."""
    if _examples(x) is None:
        return None
    images, steady = (PROBE_STEPS + 1) * recipe.batch_size, _SteadyTime()
    arguments = {"epochs": 1, "recipe": recipe, "verbose": 0, "callbacks": [steady]}
    model = hypermodel.build(hp)
    with contextlib.suppress(TrainingDiverged):  # timed all the same
        if isinstance(x, Dataset):
            head = {"x_train": x.x_train[:images], "y_train": x.y_train[:images]}
            train(model, replace(x, **head, x_val=x.x_val[:0], y_val=x.y_val[:0]), **arguments)
        else:
            fit_with_recipe(model, x[:images], y[:images], **arguments)
    return steady.seconds / (steady.steps * recipe.batch_size) if steady.steps else None


def _drawn(x, y, images: int):
    """`images` of the training images of `x` (a `Dataset`, or arrays with labels `y`),
    drawn at random but the same for every trial: arrays sorted by class would lose
    classes to a first few."""
    count = _examples(x)
    if images >= count:
        return x, y
    kept = np.sort(np.random.default_rng(0).permutation(count)[:images])
    if isinstance(x, Dataset):
        return replace(x, x_train=x.x_train[kept], y_train=x.y_train[kept]), y
    return x[kept], y[kept]


def _validated(x, fit_arguments: dict) -> int | None:
    """How many the validation images of a trial on `x` are: a `Dataset`'s, or those of
    `validation_data` arrays; None where they do not say."""
    if isinstance(x, Dataset):
        return len(x.y_val)
    validation = fit_arguments.get("validation_data")
    return len(validation[1]) if isinstance(validation, tuple) else None


def _examples(x) -> int | None:
    """How many the training images `x` are; None where they do not say (a tf.data
    dataset)."""
    if isinstance(x, Dataset):
        return len(x.y_train)
    return len(x) if hasattr(x, "shape") else None


class _SteadyTime(keras.callbacks.Callback):
    """Seconds of the training steps after the first (tracing, the pipeline's start), of
    the last validation pass, and of each epoch after the first besides its steps and
    validation (`per_epoch`, their mean): what more epochs of the same network cost."""

    def __init__(self):
        super().__init__()
        self.seconds, self.steps, self.validation, self.per_epoch = 0.0, 0, 0.0, 0.0
        self._traced, self._began, self._testing = False, None, None
        self._epoch_began, self._epoch_steps, self._extra = None, 0.0, []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_began, self._epoch_steps = time.perf_counter(), 0.0

    def on_epoch_end(self, epoch, logs=None):
        if epoch > 0:  # the first epoch's extra time is the start-up's
            wall = time.perf_counter() - self._epoch_began
            self._extra.append(max(0.0, wall - self._epoch_steps - self.validation))
            self.per_epoch = sum(self._extra) / len(self._extra)

    def on_train_batch_begin(self, batch, logs=None):
        self._began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        seconds = time.perf_counter() - self._began
        self._epoch_steps += seconds
        if self._traced:
            self.seconds += seconds
            self.steps += 1
        self._traced = True

    def on_test_begin(self, logs=None):
        self._testing = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation = time.perf_counter() - self._testing


class _Halfway(keras.callbacks.Callback):
    """The validation score at the end of half of a trial's `epochs` (none where they are
    odd); given an `incumbent` with a halfway score of its own, stops a trial behind it
    there by more than the noise on `validated` images (`Incumbent.behind_at_half`)."""

    def __init__(self, epochs: int, incumbent: Incumbent | None, validated, verbose):
        super().__init__()
        self.at = epochs // 2 if epochs and epochs % 2 == 0 else None
        self.incumbent, self.validated, self.verbose = incumbent, validated, verbose
        self.score, self.stopped = None, None

    def on_epoch_end(self, epoch, logs=None):
        if self.at is None or epoch + 1 != self.at:
            return
        self.score = (logs or {}).get("val_accuracy")
        if self.score is None or self.incumbent is None:
            return
        why = self.incumbent.behind_at_half(self.score, self.validated)
        if why:
            self.stopped, self.model.stop_training = why, True
            if self.verbose:
                print(f"Stopped at half its trial: {why}.")
