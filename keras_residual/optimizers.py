"""A recipe's learning-rate schedule and optimizer, built from Keras's, and the model
compiled with them."""

from __future__ import annotations

import time

import keras

from keras_residual import _checks
from keras_residual.recipes import OPTIMIZERS, SGD_OPTIMIZERS, Recipe
from keras_residual.techniques import MuonSGD, OneCycle, RateScaledSGD

MAX_WARMUP_FRACTION = 0.3
# A run paced to a time (`ScheduleOverTime`) trains at most this many times the epochs
# planned for it: a forecast of its pace too slow by more than that ends it early, its
# schedule complete all the same.
MOST_STRETCH = 2


def peak_rate(recipe: Recipe) -> float:
    """The recipe's peak learning rate for its batch size."""
    return recipe.learning_rate * recipe.batch_size / recipe.reference_batch


def learning_rate_schedule(recipe: Recipe, steps_per_epoch: int, epochs: int):
    """The recipe's schedule as a Keras `LearningRateSchedule` (or a float: constant, and
    the plateau schedule's start, which `schedule_callbacks` lowers)."""
    peak = peak_rate(recipe)
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


def schedule_callbacks(recipe: Recipe) -> list[keras.callbacks.Callback]:
    """The callbacks a schedule needs beside the optimizer: for `"plateau"`, Keras's
    `ReduceLROnPlateau` on the training loss and `EarlyStopping` that only restores the
    weights of the lowest training loss at the end (it never stops a run).

    Example:
    >>> from keras_residual.recipes import RECIPES
    >>> [type(c).__name__ for c in schedule_callbacks(RECIPES["wang2017"])]
    ['ReduceLROnPlateau', 'EarlyStopping']
    """
    if recipe.schedule != "plateau":
        return []
    return [
        keras.callbacks.ReduceLROnPlateau(
            monitor="loss",
            factor=0.5,
            patience=recipe.patience,
            min_lr=peak_rate(recipe) * recipe.anneal_to,
        ),
        keras.callbacks.EarlyStopping(monitor="loss", patience=2**62, restore_best_weights=True),
    ]


def make_optimizer(
    name: str,
    learning_rate,
    weight_decay: float = 0.0,
    ema: float = 0.0,
    momentum: float = 0.9,
    rate_multipliers: dict[str, float] | None = None,
    muon_rate_ratio: float = 1.0,
    muon_momentum: float = 0.6,
    newton_schulz_dtype: str = "float32",
) -> keras.optimizers.Optimizer:
    """An optimizer named as in the literature, built from Keras's own.

    Args:
        name: one of `OPTIMIZERS`: `sgd`, `momentum`, `nesterov`, `muon` (Nesterov SGD,
            Muon for convolution kernels: `MuonSGD`), `rmsprop`, `adam`, `adamw`.
        learning_rate: a number or a Keras `LearningRateSchedule`.
        weight_decay: decoupled weight decay (Keras style: `w -= lr * wd * w`).
        ema: > 0 keeps Keras's moving average of the weights with that momentum.
        momentum: of the SGD optimizers (`momentum`, `nesterov`).
        rate_multipliers: for the SGD optimizers, learning-rate multipliers by variable
            name (`RateScaledSGD`).
        muon_rate_ratio, muon_momentum, newton_schulz_dtype: for `muon`, the kernels' rate
            over `learning_rate`, their momentum and the dtype of their orthogonalization.

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
        nesterov = name in ("nesterov", "muon")
        sgd = {"momentum": 0.0 if name == "sgd" else momentum, "nesterov": nesterov}
        if name == "muon":
            kernels = {"muon_rate_ratio": muon_rate_ratio, "muon_momentum": muon_momentum,
                       "newton_schulz_dtype": newton_schulz_dtype}  # fmt: skip
            return MuonSGD(rate_multipliers, learning_rate=learning_rate, **kernels, **sgd,
                           **options)  # fmt: skip
        if rate_multipliers:
            return RateScaledSGD(rate_multipliers, learning_rate=learning_rate, **sgd, **options)
        return keras.optimizers.SGD(learning_rate, **sgd, **options)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, momentum=0.9, **options)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, **options)
    return keras.optimizers.AdamW(learning_rate, **{**options, "weight_decay": weight_decay})


def compile_model(
    model: keras.Model, recipe: Recipe, steps_per_epoch: int, epochs: int, paced: bool = False
) -> keras.Model:
    """Compile `model` for classification with one-hot labels, following `recipe`; `paced`:
    with the schedule's first rate as a number, which `ScheduleOverTime` then sets."""
    schedule = learning_rate_schedule(recipe, steps_per_epoch, epochs)
    optimizer = make_optimizer(
        recipe.optimizer,
        float(schedule(0)) if paced and callable(schedule) else schedule,
        recipe.weight_decay,
        recipe.ema,
        recipe.momentum,
        {"beta": recipe.norm_shift_rate} if recipe.norm_shift_rate != 1 else None,
        recipe.muon_rate / peak_rate(recipe),
        recipe.muon_momentum,
        model.compute_dtype,
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


class ScheduleOverTime(keras.callbacks.Callback):
    """Paces a run to end at `deadline` (a `time.monotonic()` time) with its schedule
    complete, however fast it runs: before each step the optimizer's rate is set to the
    rate `schedule` has at the same share of its `planned_steps` as the run has reached of
    its time, and the first step to end past the deadline is the last (mid-epoch, if the
    time ends there). So a budget is spent to its end, not to a forecast of the pace with a
    margin kept for the forecast's error. A run held to `most_steps` (`fit`'s epochs) that
    reaches them first reaches the schedule's end with them. Compile with the rate a
    number (`compile_model(..., paced=True)`); `steps` counts the steps trained. A
    constant `schedule` (a number) is left to the callbacks that lower it on a plateau.

    Args:
        deadline: when the run ends, as `time.monotonic()` counts.
        schedule: a Keras `LearningRateSchedule` (or a number: constant).
        planned_steps: the steps `schedule` is planned for.
        most_steps: the steps `fit` trains at most (None: no other limit).

    Example:
    >>> schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=100)
    >>> pacing = ScheduleOverTime(time.monotonic() + 60, schedule, planned_steps=100)
    >>> pacing.planned_step(0.5), pacing.planned_step(2.0)  # half the time; past its end
    (50.0, 100.0)
    """

    def __init__(self, deadline: float, schedule, planned_steps: int, most_steps=None):
        super().__init__()
        self.deadline, self.schedule = deadline, schedule
        self.planned_steps, self.most_steps = planned_steps, most_steps
        self.began, self.steps = time.monotonic(), 0

    def clock(self) -> float:
        """The schedule's step now."""
        return self.planned_step(self.share())

    def planned_step(self, share: float) -> float:
        """The schedule's step at `share` of the run (clipped to its end)."""
        return min(share, 1.0) * self.planned_steps

    def share(self) -> float:
        """How much of the run is done: of its time, or of `most_steps` if further."""
        now = time.monotonic()
        of_time = (now - self.began) / max(self.deadline - self.began, 1e-9)
        return max(of_time, self.steps / self.most_steps if self.most_steps else 0.0)

    def on_train_begin(self, logs=None):
        self.began, self.steps = time.monotonic(), 0

    def on_train_batch_begin(self, batch, logs=None):
        if callable(self.schedule):  # a number is left to the callbacks that lower it
            self.model.optimizer.learning_rate = float(self.schedule(self.clock()))

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if time.monotonic() >= self.deadline:
            self.model.stop_training = True
