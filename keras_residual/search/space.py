"""The search space over residual architectures and their training, as a keras-tuner HyperModel.

A dimension is fixed (a single value), a list of choices, or a range
`{"min": a, "max": b}` (with optional `"step"` or `"sampling": "log"`).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import keras
import keras_tuner
import numpy as np

from keras_residual import _checks
from keras_residual.data import Dataset
from keras_residual.fast_cifar import FAST_CIFAR_ACTIVATION, FAST_CIFAR_HEAD
from keras_residual.flops import count_flops
from keras_residual.network import build_network
from keras_residual.search.budget import TimeLimit
from keras_residual.spec import ACTIVATIONS, BLOCKS, DOWNSAMPLES, Norm, ResNetSpec
from keras_residual.training import (
    OPTIMIZERS,
    RECIPES,
    TrainingDiverged,
    fit_with_recipe,
    get_recipe,
    train,
)

SEARCHED_SHORTCUTS = ("A", "B", "C", "gated")
SAMPLINGS = ("linear", "log", "reverse_log")
SE_RATIO = 1 / 16
# learning-rate range per optimizer family: a conditional hyperparameter
LEARNING_RATES = {"sgd": (0.02, 0.4), "adaptive": (3e-4, 1e-2)}
_ADAPTIVE = ("rmsprop", "adam", "adamw")
# What a trial refused before it trains says, by the status its results row then takes:
# over a constraint, or too slow for the time left.
NOT_TRAINED = {"rejected": "rejected before training", "skipped": "skipped before training"}
PROBE_STEPS = 2  # steps timed (after the first) of a network whose forecast extrapolates

# Depth x width in the speed family's layout (a whitening stem and a max-pool opening each
# stage: 28 -> 27 -> 13 -> 6 -> 3), 2 to 3x cheaper an image than striding (`--downsample
# stride`) and as accurate (ResNet-8 at width 16 retrained 3 epochs: 99.39-99.55% test over
# six seeds; strided, 99.39% in one), so the retraining fits on CPUs without bfloat16: a
# trial on a fifth of MNIST takes 12 s (ResNet-8, width 8) to 23 s (ResNet-14, width 16) in
# float32 on 2 AVX2 cores.
MNIST_SPACE: dict = {
    "stages": 3,
    "blocks_per_stage": [1, 2, 3],
    "width": [8, 16, 32],
    "widen_factor": 1,
    "downsample": "pool",
    "block": "basic",
    "preact": False,
    "shortcut": "B",
    "se": False,
    "activation": "relu",
    "drop_path_rate": 0.0,
    "optimizer": "nesterov",
    "learning_rate": 0.2,
    "weight_decay": 5e-4,
    "batch_size": 128,
}
# The regime that trains best per CPU-second (the speed family's, `fast_cifar`): wide and
# shallow, pooling downsampling (`--downsample pool,stride` compares striding: 4-16x the
# FLOPs at these widths), trained with the `airbench` recipe's settings (Nesterov at 1.5
# for batch 1024, decoupled decay 0.0089) and the speed family's head they are tuned for
# (`RECIPE_HEADS`), and its GELU. 50 to 970 MFLOPs an image (`fast_cifar_s`: 206).
_AIRBENCH = RECIPES["airbench"]
CIFAR10_SPACE: dict = {
    "stages": 3,
    "blocks_per_stage": [1, 2],
    "width": [32, 64, 96, 128],
    "widen_factor": 1,
    "downsample": "pool",
    "block": "basic",
    "preact": False,
    "shortcut": "B",
    "se": [False, True],
    "activation": FAST_CIFAR_ACTIVATION,
    "drop_path_rate": 0.0,
    "optimizer": _AIRBENCH.optimizer,
    "learning_rate": _AIRBENCH.learning_rate,
    "weight_decay": _AIRBENCH.weight_decay,
    "batch_size": _AIRBENCH.batch_size,
}
DEFAULT_SPACES = {
    "mnist": MNIST_SPACE,
    "fashion_mnist": MNIST_SPACE,
    "cifar10": CIFAR10_SPACE,
    "cifar100": CIFAR10_SPACE,
}
# The recipe each default space's trials train with (the search's own fields laid over it).
SPACE_RECIPES = {"mnist": "fast", "fashion_mnist": "fast", "cifar10": "airbench",
                 "cifar100": "airbench"}  # fmt: skip
# The head (pooling, logit scale, batch-norm settings, init) a recipe's learning rate is tuned
# for: airbench's logits x 1/9 take a rate that would blow up unscaled logits.
RECIPE_HEADS = {"airbench": FAST_CIFAR_HEAD}
_ALLOWED = {
    "activation": ACTIVATIONS,
    "block": BLOCKS,
    "downsample": DOWNSAMPLES,
    "shortcut": SEARCHED_SHORTCUTS,
    "optimizer": OPTIMIZERS,
    "preact": (False, True),
    "se": (False, True),
}
_INTEGERS = ("stages", "blocks_per_stage", "width", "widen_factor", "batch_size")


def _check_dimension(name: str, spec):
    """Validate one dimension: fixed value, non-empty choices or a proper range."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"min", "max", "step", "sampling"}
        if unknown or "min" not in spec or "max" not in spec:
            raise ValueError(
                f"Range for `{name}` needs 'min' and 'max' (optionally 'step' or "
                f"'sampling'); got {dict(spec)!r}."
            )
        for bound in ("min", "max"):
            _checks.finite(f"{name}.{bound}", spec[bound])
        if not spec["min"] < spec["max"]:
            raise ValueError(
                f"Range for `{name}` is empty or inverted: min={spec['min']!r} must be "
                f"below max={spec['max']!r}."
            )
        if "step" in spec:
            _checks.positive(f"{name}.step", spec["step"])
        sampling = _checks.choice(f"{name}.sampling", spec.get("sampling", "linear"), SAMPLINGS)
        if sampling != "linear" and spec["min"] <= 0:
            raise ValueError(f"Log range for `{name}` needs min > 0, got {spec['min']!r}.")
        values = [spec["min"], spec["max"]]
    elif isinstance(spec, list | tuple):
        if not spec:
            raise ValueError(f"Choices for `{name}` are empty: give at least one value.")
        values = list(spec)
    else:
        values = [spec]
    for value in values:
        if name in _ALLOWED:
            _checks.choice(name, value, _ALLOWED[name])
        elif name == "drop_path_rate":
            _checks.rate(name, value)
        elif name in _INTEGERS:
            _checks.positive_int(name, value)
        elif name == "weight_decay":
            _checks.non_negative(name, value)
        elif value is not None:
            _checks.positive(name, value)


def default_space_for(input_shape, dataset: str | None = None) -> str:
    """The default space for `dataset`: a built-in dataset's own; for data of your own,
    by `input_shape`: MNIST's for small one-channel images, CIFAR-10's for anything else.

    Example:
    >>> default_space_for((96, 96, 3)), default_space_for((28, 28, 1), "fashion_mnist")
    ('cifar10', 'fashion_mnist')
    """
    if dataset in DEFAULT_SPACES:
        return dataset
    *size, channels = input_shape
    small = all(side is not None and side <= 32 for side in size)
    return "mnist" if channels == 1 and small else "cifar10"


def downsampling(input_shape, stages: int) -> tuple[str, tuple[int, ...]]:
    """The stem and stage strides that bring `input_shape` to a final map of about 7x7
    (`round(log2(min(height, width) / 7))` halvings): a CIFAR stem and strides (1, 2, 2)
    at 28 to 32 pixels, a strided first stage at 64, the ImageNet stem (/4) from 96 up.

    Example:
    >>> downsampling((28, 28, 1), 3), downsampling((96, 128, 3), 3)
    (('cifar', (1, 2, 2)), ('imagenet', (1, 2, 2)))
    """
    side = min((d for d in input_shape[:2] if d is not None), default=32)
    halvings = max(0, min(round(math.log2(side / 7)), int(math.log2(side))))
    stem = "imagenet" if halvings >= stages + 1 else "cifar"
    in_stages = halvings - (2 if stem == "imagenet" else 0)
    strides = [1] * stages
    for i in range(min(in_stages, stages)):
        strides[stages - 1 - i] = 2
    return stem, tuple(strides)


def resolve_space(dataset: str = "mnist", space: Mapping | None = None, **dimensions) -> dict:
    """The dataset's default space (`DEFAULT_SPACES`) with `space` then `dimensions` laid
    over it, validated.

    Example:
    >>> resolve_space("mnist", width=[8, 32])["width"]
    [8, 32]
    """
    resolved = {**DEFAULT_SPACES[_checks.choice("dataset", dataset, DEFAULT_SPACES)]}
    for overrides in (space or {}, dimensions):
        unknown = set(overrides) - set(resolved)
        if unknown:
            raise ValueError(
                f"Unknown search dimensions {sorted(unknown)}; known: {sorted(resolved)}."
            )
        resolved |= {k: v for k, v in overrides.items() if v is not None or k == "learning_rate"}
    for name, spec in resolved.items():
        _check_dimension(name, spec)
    return resolved


def load_space_file(path: str | Path) -> dict:
    """Read a search space from a JSON file: `{"width": [16, 32], "block": "preact", ...}`."""
    try:
        space = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read the search space file {path}: {error}") from error
    if not isinstance(space, dict):
        raise ValueError(f"{path} must hold a JSON object of dimensions.")
    return space


def _declare(hp: keras_tuner.HyperParameters, name: str, spec):
    if isinstance(spec, Mapping):
        kind = hp.Int if all(isinstance(spec[k], int) for k in ("min", "max")) else hp.Float
        extra = {k: spec[k] for k in ("step", "sampling") if k in spec}
        return kind(name, spec["min"], spec["max"], **extra)
    if isinstance(spec, list | tuple):
        return hp.Choice(name, list(spec)) if len(spec) > 1 else hp.Fixed(name, spec[0])
    return hp.Fixed(name, spec)


def _smallest(name: str, values):
    """The value of a dimension that makes the smallest network."""
    if isinstance(values, Mapping):
        return values["min"]
    options = list(values) if isinstance(values, list | tuple) else [values]
    cheapest = {"block": "basic", "shortcut": "A", "se": False}
    if name in cheapest and cheapest[name] in options:
        return cheapest[name]
    numbers = [v for v in options if isinstance(v, int | float) and not isinstance(v, bool)]
    return min(numbers) if numbers and len(numbers) == len(options) else options[0]


class ResidualHyperModel(keras_tuner.HyperModel):
    """Searches depth, width, downsampling, block, pre-activation, shortcut, SE,
    activation, drop-path and training.

    Each trial's architecture is a `ResNetSpec` (`spec(hp)`), built by `build_network`;
    `fit` trains it with `train` and the named `recipe`, the trial's optimizer, learning
    rate, weight decay and batch size laid over it, and returns the trial's record: best
    validation accuracy and loss, parameters, FLOPs, seconds.

    The stem and the strides follow the input size (`downsampling`), so 28x28 to 224x224
    images, square or not, get networks that end near 7x7; with `downsample="pool"` small
    images get the speed family's layout instead (a whitening stem and a max-pool in every
    stage, ending near 3x3).

    It is a keras-tuner `HyperModel` like any other: inside `keras_tuner.RandomSearch`,
    `BayesianOptimization` or `Hyperband`, `tuner.search(x, y, validation_data=(xv, yv),
    epochs=...)` trains on arrays (integer or one-hot labels) or `tf.data` datasets as
    given (`fit_with_recipe`); the toolkit's `run_search` passes a `Dataset` instead.

    Args:
        input_shape, num_classes: of the data.
        dataset: whose default space to start from (a key of `DEFAULT_SPACES`; None: by
            the input shape, `default_space_for`).
        space: dimensions laid over the default space (see the module docstring).
        recipe: the named recipe trials train with (None: the space's, `SPACE_RECIPES`);
            the networks take the head it is tuned for (`RECIPE_HEADS`, e.g. `airbench`:
            max pooling, logits x 1/9, batch-norm momentum 0.6 without scales, identity
            (`"dirac"`) kernel initialisation).
        norm: batch-norm settings of the searched networks (default: the recipe's head's,
            else `Norm()`).
        max_params, max_mflops: constraints: a trial whose network has more parameters or
            forward MFLOPs per image fails before it trains, the reason in its record; a
            space whose smallest network is over them is refused here.
        dtype: a Keras dtype policy name (None: Keras's global policy).
        **dimensions: more dimensions, laid over `space`.

    Example:
    >>> hypermodel = ResidualHyperModel((28, 28, 1), 10, width=8, blocks_per_stage=1)
    >>> spec = hypermodel.spec(keras_tuner.HyperParameters())
    >>> spec.depths, spec.filters
    ((1, 1, 1), (8, 16, 32))
    """

    takes_time_limit = True  # the toolkit's tuners send each trial's `TimeLimit` to `fit`

    def __init__(
        self,
        input_shape,
        num_classes: int,
        dataset: str | None = None,
        space: Mapping | None = None,
        *,
        recipe: str | None = None,
        norm: Norm | None = None,
        dtype: str | None = None,
        max_params: int | None = None,
        max_mflops: float | None = None,
        **dimensions,
    ):
        super().__init__(name="residual_hypermodel")
        self.input_shape = tuple(input_shape)
        self.num_classes = _checks.positive_int("num_classes", num_classes)
        self.input_shape = _checks.input_shape(self.input_shape)
        dataset = default_space_for(self.input_shape) if dataset is None else dataset
        self.space = resolve_space(dataset, space, **dimensions)
        self.recipe = _checks.choice("recipe", recipe or SPACE_RECIPES[dataset], RECIPES)
        head = RECIPE_HEADS.get(self.recipe, {})
        self.norm = norm or head.get("norm", Norm())
        self.head = {k: v for k, v in head.items() if k != "norm"}  # pooling, logits, init
        self.dtype = dtype
        self.max_params = (
            None if max_params is None else _checks.positive_int("max_params", max_params)
        )
        self.max_mflops = None if max_mflops is None else _checks.positive("max_mflops", max_mflops)
        if self.max_params or self.max_mflops:
            self._check_smallest_fits()

    def over_budget(self, params: int, flops: float) -> str | None:
        """Why a network of `params` parameters and `flops` forward FLOPs per image breaks
        the constraints, or None."""
        if self.max_params and params > self.max_params:
            return f"{params:,} parameters, over max_params={self.max_params:,}"
        if self.max_mflops and flops / 1e6 > self.max_mflops:
            return f"{flops / 1e6:,.1f} MFLOPs, over max_mflops={self.max_mflops:,}"
        return None

    def _check_smallest_fits(self) -> None:
        """Refuse a space none of whose smallest networks (one per downsampling: pooling
        has fewer FLOPs, striding fewer parameters) meets the constraints."""
        hp = keras_tuner.HyperParameters()
        self.declare(hp)
        for name, values in self.space.items():
            if name in hp.values:
                hp.values[name] = _smallest(name, values)
        reasons = []
        for downsample in np.atleast_1d(self.space["downsample"]):
            if "downsample" in hp.values:
                hp.values["downsample"] = str(downsample)
            spec = self.spec(hp)
            model = build_network(spec, dtype="float32")
            why = self.over_budget(model.count_params(), count_flops(model))
            if why is None:
                return
            reasons.append(f"{spec.name} has {why}")
        raise ValueError(
            f"No network of the search space meets the constraints: the smallest "
            f"({'; '.join(reasons)}). Relax them or shrink the space."
        )

    def declare(self, hp: keras_tuner.HyperParameters) -> dict:
        """Declare every dimension on `hp` and return the chosen values."""
        values = {
            name: _declare(hp, name, spec)
            for name, spec in self.space.items()
            if name != "learning_rate"
        }
        values["learning_rate"] = self._learning_rate(hp, values["optimizer"])
        return values

    def _learning_rate(self, hp, optimizer: str) -> float:
        spec = self.space["learning_rate"]
        if spec is not None:
            return _declare(hp, "learning_rate", spec)
        declared = self.space["optimizer"]
        families = {"adaptive" if o in _ADAPTIVE else "sgd" for o in np.atleast_1d(declared)}
        for family in sorted(families):
            members = [o for o in OPTIMIZERS if (o in _ADAPTIVE) == (family == "adaptive")]
            low, high = LEARNING_RATES[family]
            with hp.conditional_scope("optimizer", members):
                value = hp.Float(f"{family}_learning_rate", low, high, sampling="log")
            if (optimizer in _ADAPTIVE) == (family == "adaptive"):
                chosen = value
        return chosen

    def spec(self, hp: keras_tuner.HyperParameters) -> ResNetSpec:
        """The architecture the values in `hp` (or the space's defaults) describe."""
        v = self.declare(hp)
        stages, per_stage = v["stages"], v["blocks_per_stage"]
        depth = stages * per_stage * (2 if v["block"] == "basic" else 3) + 2
        stem, strides = downsampling(self.input_shape, stages)
        pool = v["downsample"] == "pool"
        if pool and stem == "cifar":  # the speed family's layout: whitened 2x2 patches, and
            stem, strides = "whiten", (2,) * stages  # every stage pools (32 -> 31, ..., 3)
        return ResNetSpec(
            name=f"{'preact_' if v['preact'] else ''}resnet{depth}_w{v['width']}"
            + ("_pool" if pool else ""),
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            stem_filters=v["width"],
            block=v["block"],
            depths=(per_stage,) * stages,
            filters=tuple(v["width"] * v["widen_factor"] * 2**i for i in range(stages)),
            stem=stem,
            strides=strides,
            downsample=v["downsample"],
            preact=v["preact"],
            shortcut=v["shortcut"],
            se_ratio=SE_RATIO if v["se"] else 0.0,
            activation=v["activation"],
            drop_path_rate=v["drop_path_rate"],
            norm=self.norm,
            **self.head,
        )

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        return build_network(self.spec(hp), dtype=self.dtype)

    def recipe_for(self, hp: keras_tuner.HyperParameters):
        """The named recipe with the trial's optimizer, learning rate, decay and batch."""
        v = self.declare(hp)
        return get_recipe(
            self.recipe,
            optimizer=v["optimizer"],
            learning_rate=v["learning_rate"],
            reference_batch=v["batch_size"],  # the searched rate is for the searched batch
            batch_size=v["batch_size"],
            weight_decay=v["weight_decay"],
        )

    def fit(
        self,
        hp,
        model,
        x,
        y=None,
        *,
        epochs: int = 1,
        callbacks=(),
        time_limit: TimeLimit | None = None,
        **kwargs,
    ):
        """Train a trial's model: on a `Dataset` with `train` (the toolkit's pipelines),
        else on `x`, `y`, `validation_data` as `model.fit` takes them with
        `fit_with_recipe`. Returns the trial's record: the best of each metric over the
        epochs, parameters, FLOPs, seconds and the next epoch. A network over the
        constraints, or (given a `time_limit`) too slow for the time left, fails before
        it trains."""
        params, flops = model.count_params(), count_flops(model)
        why = self.over_budget(params, flops)
        if why:
            raise keras_tuner.errors.FailedTrialError(f"{NOT_TRAINED['rejected']}: {why}")
        recipe = self.recipe_for(hp)
        if "batch_size" in kwargs:  # a keras-tuner user's fixed batch size
            recipe = replace(recipe, batch_size=kwargs.pop("batch_size"))
        why = time_limit and time_limit.check(flops)
        if why and time_limit.worth_probing(flops):
            started = time.perf_counter()
            per_image = self._probe(hp, x, y, recipe)
            if per_image is not None:
                spent = time.perf_counter() - started
                timing, time_limit = time_limit.probed(flops, per_image, spent)
                why = time_limit.check(flops, timing)
                if kwargs.get("verbose", "auto"):
                    forecast = time_limit.cost.timing(flops).per_image
                    print(
                        f"Timed {PROBE_STEPS} steps of {model.name}: {per_image * 1e3:.2f} ms "
                        f"an image (forecast {forecast * 1e3:.2f}); "
                        + ("skipping it." if why else "training it.")
                    )
                why = why and f"{why} (timed over {PROBE_STEPS} steps)"
        if why:
            raise keras_tuner.errors.FailedTrialError(f"{NOT_TRAINED['skipped']}: {why}")
        common = {
            "epochs": epochs,
            "recipe": recipe,
            "seed": kwargs.pop("seed", 0),
            "verbose": kwargs.pop("verbose", "auto"),
            "callbacks": [*callbacks, steady := _SteadyTime()],
            "initial_epoch": kwargs.pop("initial_epoch", 0),
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
        if _sized(x):
            record["train_examples"] = len(x.y_train if isinstance(x, Dataset) else x)
        if steady.steps:  # the cost of more training: per image and validation, and to start
            record["seconds_per_image"] = steady.seconds / (steady.steps * recipe.batch_size)
            record["validation_seconds"] = steady.validation
            steady_total = steady.seconds + steady.validation * len(history.epoch)
            record["overhead_seconds"] = max(0.0, fit_seconds - steady_total)
        return record

    def _probe(self, hp, x, y, recipe) -> float | None:
        """Seconds per training image of a fresh copy of the trial's network over
        `PROBE_STEPS` steps after the first (tracing), on the first images of `x`; None
        where `x` is not a `Dataset` or arrays, or too few images for a step to time."""
        if not _sized(x):
            return None
        images, steady = (PROBE_STEPS + 1) * recipe.batch_size, _SteadyTime()
        arguments = {"epochs": 1, "recipe": recipe, "verbose": 0, "callbacks": [steady]}
        model = self.build(hp)
        with contextlib.suppress(TrainingDiverged):  # timed all the same
            if isinstance(x, Dataset):
                head = {"x_train": x.x_train[:images], "y_train": x.y_train[:images]}
                train(model, replace(x, **head, x_val=x.x_val[:0], y_val=x.y_val[:0]), **arguments)
            else:
                fit_with_recipe(model, x[:images], y[:images], **arguments)
        return steady.seconds / (steady.steps * recipe.batch_size) if steady.steps else None


def _sized(x) -> bool:
    """Whether the training images `x` say how many they are (a tf.data dataset does not)."""
    return isinstance(x, Dataset) or hasattr(x, "shape")


class _SteadyTime(keras.callbacks.Callback):
    """Seconds of the training steps after the first (tracing, the pipeline's start) and
    of the last validation pass: what more epochs of the same network cost."""

    def __init__(self):
        super().__init__()
        self.seconds, self.steps, self.validation = 0.0, 0, 0.0
        self._traced, self._began, self._testing = False, None, None

    def on_train_batch_begin(self, batch, logs=None):
        self._began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._traced:
            self.seconds += time.perf_counter() - self._began
            self.steps += 1
        self._traced = True

    def on_test_begin(self, logs=None):
        self._testing = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation = time.perf_counter() - self._testing
