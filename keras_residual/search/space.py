"""The search space over residual architectures and their training, as a keras-tuner HyperModel.

A dimension is fixed (a single value), a list of choices, or a range
`{"min": a, "max": b}` (with optional `"step"` or `"sampling": "log"`).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import keras
import keras_tuner
import numpy as np

from keras_residual import _checks
from keras_residual.fast_cifar import FAST_CIFAR_ACTIVATION, FAST_CIFAR_HEAD
from keras_residual.flops import count_flops
from keras_residual.models import resnet_cifar_spec, resnet_series_spec
from keras_residual.network import build_network
from keras_residual.search.trials import fit_trial
from keras_residual.spec import ACTIVATIONS, BLOCKS, DOWNSAMPLES, Norm, ResNetSpec, scaled_shape
from keras_residual.training import (
    OPTIMIZERS,
    RECIPES,
    get_recipe,
)

SEARCHED_SHORTCUTS = ("A", "B", "C", "gated")
# The architecture's dimensions: `resnet_cifar_spec`'s arguments and `ResNetSpec` fields,
# under their own names; the others are `Recipe` fields.
ARCHITECTURE = (
    "stages", "blocks_per_stage", "width", "widen_factor", "block",
    "downsample", "preact", "shortcut", "se_ratio", "activation", "drop_path_rate",
    "input_scale",
)  # fmt: skip
# A series space's architecture: `resnet_series_spec`'s arguments and `ResNetSpec` fields.
SERIES_ARCHITECTURE = (
    "stages", "blocks_per_stage", "width", "kernel_size", "block", "preact", "shortcut",
    "se_ratio", "activation", "drop_path_rate",
)  # fmt: skip
SAMPLINGS = ("linear", "log", "reverse_log")
SE_RATIO = 1 / 16
# learning-rate range per optimizer family: a conditional hyperparameter
LEARNING_RATES = {"sgd": (0.02, 0.4), "adaptive": (3e-4, 1e-2)}
_ADAPTIVE = ("rmsprop", "adam", "adamw")
# Depth x width in the speed family's layout (a whitening stem and a max-pool opening each
# stage: 28 -> 27 -> 13 -> 6 -> 3): several times cheaper an image than striding
# (`--downsample stride`) and as accurate on MNIST, so that the main job's retraining fits
# its budget on CPUs without bfloat16 too (measurements: benchmarks/results).
MNIST_SPACE: dict = {
    "stages": 3,
    "blocks_per_stage": [1, 2, 3],
    "width": [8, 16, 32],
    "widen_factor": 1,
    "downsample": "pool",
    "block": "basic",
    "preact": False,
    "shortcut": "B",
    "se_ratio": 0.0,
    "activation": "relu",
    "drop_path_rate": 0.0,
    "input_scale": "auto",  # `input_scales`: the sizes down to 32 pixels
    "optimizer": "nesterov",
    "learning_rate": 0.2,
    "weight_decay": 5e-4,
    "batch_size": 128,
}
# The regime that trains best per CPU-second (the speed family's, `fast_cifar`): wide and
# shallow (blocks per stage as one number or one a stage: `"1,0,1"` is `fast_cifar_m`'s),
# pooling downsampling (`--downsample pool,stride` compares striding, several
# times the FLOPs at these widths), trained with the `airbench` recipe's settings and the
# speed family's head they are tuned for (`RECIPE_HEADS`), and its GELU.
_AIRBENCH = RECIPES["airbench"]
CIFAR10_SPACE: dict = {
    "stages": 3,
    "blocks_per_stage": ["1,1,1", "1,0,1", "2,2,2"],  # an empty stage needs pooling
    # stage filters w, 2w, 4w; "64,256,256" (one a stage) is `fast_cifar_s`'s
    "width": ["32", "64", "96", "128", "64,256,256"],
    "widen_factor": 1,
    "downsample": "pool",
    "block": "basic",
    "preact": False,
    "shortcut": "B",
    "se_ratio": [0.0, SE_RATIO],
    "activation": FAST_CIFAR_ACTIVATION,
    "drop_path_rate": 0.0,
    "input_scale": "auto",
    "optimizer": _AIRBENCH.optimizer,
    "learning_rate": _AIRBENCH.learning_rate,
    "weight_decay": _AIRBENCH.weight_decay,
    "batch_size": _AIRBENCH.batch_size,
}
# Time series (`(steps, channels)` data): Wang et al.'s ResNet (width 64, one block a stage,
# kernels 8/5/3) and its neighbours in depth, width and kernel sizes (`"8,5,3"`: a
# convolution per size, as keras-tuner's choices are scalars of one type), trained with the
# `series` recipe.
_SERIES = RECIPES["series"]
SERIES_SPACE: dict = {
    "stages": 3,
    "blocks_per_stage": [1, 2],
    "width": [32, 64],
    "kernel_size": ["8,5,3", "5,5", "3,3"],
    "block": "basic",
    "preact": False,
    "shortcut": "B",
    "se_ratio": [0.0, SE_RATIO],
    "activation": "relu",
    "drop_path_rate": 0.0,
    "optimizer": _SERIES.optimizer,
    "learning_rate": _SERIES.learning_rate,
    "weight_decay": _SERIES.weight_decay,
    "batch_size": _SERIES.batch_size,
}
# The presets a default space holds as points, in order of preference, costliest first: a
# search tries the first that its budget can train (`baselines`) as its first trial, so its
# pick can only improve on the known network (it times the last, the cheapest, first). The
# speed family's `fast_cifar_m` trains best in an hour of 2 CPU cores on CIFAR-10,
# `fast_cifar_s` in shorter budgets (a larger preset is preferred only where its retraining
# trains `PREFERRED_EPOCHS`, the length the speed family's recipe is tuned for), the pooling
# layout's ResNet-8 at width 32 (`fast_mnist`) in a few minutes on MNIST
# (benchmarks/results). Each computes at the smallest size the space holds
# (`input_scale`: the speed family's layout is made for 32 pixels).
BASELINES = {
    "mnist": [("fast_mnist", {**MNIST_SPACE, "blocks_per_stage": 1, "width": 32})],
    "cifar10": [
        ("fast_cifar_m", {**CIFAR10_SPACE, "blocks_per_stage": "1,0,1", "width": "128",
                          "se_ratio": 0.0}),
        ("fast_cifar_s", {**CIFAR10_SPACE, "blocks_per_stage": "1,0,1", "width": "64,256,256",
                          "se_ratio": 0.0}),
    ],
    "series": [("resnet_series", {
        "stages": 3, "blocks_per_stage": 1, "width": 64, "kernel_size": "8,5,3",
        "block": "basic", "preact": False, "shortcut": "B", "se_ratio": 0.0,
        "activation": "relu", "drop_path_rate": 0.0, "optimizer": _SERIES.optimizer,
        "learning_rate": _SERIES.learning_rate, "weight_decay": _SERIES.weight_decay,
        "batch_size": _SERIES.batch_size,
    })],
}  # fmt: skip
PREFERRED_EPOCHS = 10
DEFAULT_SPACES = {
    "mnist": MNIST_SPACE,
    "fashion_mnist": MNIST_SPACE,
    "cifar10": CIFAR10_SPACE,
    "cifar100": CIFAR10_SPACE,
    "series": SERIES_SPACE,
}
# The recipe each default space's trials train with (the search's own fields laid over it).
SPACE_RECIPES = {"mnist": "fast", "fashion_mnist": "fast", "cifar10": "airbench",
                 "cifar100": "airbench", "series": "series"}  # fmt: skip
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
}
_INTEGERS = ("stages", "width", "widen_factor", "batch_size")
# `input_scale="auto"` (`input_scales`): the scales that keep an image's shorter side at
# `SCALED_SIDE` pixels or more, the size the speed family's layout is made for.
SCALES, SCALED_SIDE = (1.0, 3 / 4, 2 / 3, 1 / 2, 1 / 3, 1 / 4), 32


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
        if len({type(v) for v in values}) > 1:  # keras-tuner's Choice: one type
            hint = " (sizes as strings: '3,3' for two convolutions of 3)" * (name == "kernel_size")
            raise ValueError(f"Choices for `{name}` must all be of one type, got {values!r}{hint}.")
    else:
        values = [spec]
    for value in values:
        if name == "kernel_size":
            kernel_sizes(value)
        elif name == "blocks_per_stage":
            stage_blocks(value)
        elif name == "width" and isinstance(value, str):
            stage_widths(value)
        elif name == "input_scale" and value == "auto":
            continue
        elif name in _ALLOWED:
            _checks.choice(name, value, _ALLOWED[name])
        elif name in ("drop_path_rate", "se_ratio"):
            _checks.rate(name, value)
        elif name in _INTEGERS:
            _checks.positive_int(name, value)
        elif name == "weight_decay":
            _checks.non_negative(name, value)
        elif value is not None:
            _checks.positive(name, value)


def kernel_sizes(value) -> int | tuple[int, ...]:
    """A `kernel_size` dimension's value as the spec takes it: `3` (two convolutions of 3)
    or sizes, one convolution each, `"8,5,3"` -> `(8, 5, 3)` (keras-tuner's choices are
    scalars).

    Example:
    >>> kernel_sizes("8,5,3"), kernel_sizes(3)
    ((8, 5, 3), 3)
    """
    if isinstance(value, str):
        try:
            return tuple(_checks.positive_int("kernel_size", int(k)) for k in value.split(","))
        except ValueError:
            raise ValueError(
                f"`kernel_size` must be a positive integer or sizes such as '8,5,3', got {value!r}."
            ) from None
    return _checks.positive_int("kernel_size", value)


def stage_blocks(value, stages: int | None = None) -> tuple[int, ...]:
    """A `blocks_per_stage` dimension's value as the spec's `depths`: `2` or `"2"` (as many
    in each of `stages`) or one count a stage, `"1,0,1"` (keras-tuner's choices are scalars).

    Example:
    >>> stage_blocks("1,0,1"), stage_blocks(2, stages=3), stage_blocks("2", stages=3)
    ((1, 0, 1), (2, 2, 2), (2, 2, 2))
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # one count, as in every stage
    if isinstance(value, str):
        what = "a positive integer or counts a stage such as '1,0,1'"
        count = _checks.non_negative_int
        return _per_stage("blocks_per_stage", value, stages, count, what, "counts")
    return (_checks.positive_int("blocks_per_stage", value),) * (stages or 1)


def stage_widths(value, stages: int | None = None) -> tuple[int, ...]:
    """A `width` dimension's value as the stages' filters: `16` or `"16"` (the family's
    `16, 32, 64`: doubling each stage, over `stages`; one entry without it) or one a
    stage, `"64,256,256"` (`fast_cifar_s`'s; keras-tuner's choices are scalars).

    Example:
    >>> stage_widths("64,256,256"), stage_widths(16, stages=3), stage_widths("16")
    ((64, 256, 256), (16, 32, 64), (16,))
    """
    if isinstance(value, str):
        what = "a positive integer or filters a stage such as '64,256,256'"
        widths = _per_stage("width", value, stages, _checks.positive_int, what, "filters")
        if len(widths) > 1:
            return widths
        value = widths[0]  # one width, doubled each stage
    width = _checks.positive_int("width", value)
    return tuple(width * 2**i for i in range(stages or 1))


def _per_stage(
    name: str, value: str, stages: int | None, check, what: str, noun: str
) -> tuple[int, ...]:
    """The numbers of `value` (`"1,0,1"`: the stages' `noun`), each passing `check`, and
    as many as `stages` where there are several; else a `ValueError` saying that `name`
    must be `what`."""
    try:
        numbers = tuple(check(name, int(n)) for n in value.split(","))
    except ValueError:
        raise ValueError(f"`{name}` must be {what}, got {value!r}.") from None
    if len(numbers) > 1 and stages is not None and len(numbers) != stages:
        raise ValueError(
            f"`{name}` {value!r} gives {len(numbers)} stages' {noun}, but `stages` is {stages}."
        )
    return numbers


def input_scales(input_shape) -> float | list[float]:
    """The `input_scale` choices `"auto"` gives images of `input_shape`: the `SCALES` that
    keep their shorter side at `SCALED_SIDE` (32) pixels or more, each size once; 1.0
    alone for smaller images, sequences and sizes not given.

    Example:
    >>> input_scales((48, 48, 1)), input_scales((32, 32, 3)), input_scales((150, 1))
    ([1.0, 0.75, 0.6667], 1.0, 1.0)
    """
    if len(input_shape) != 3 or None in input_shape[:2]:
        return 1.0
    sizes, scales = set(), []
    for scale in SCALES:
        size = min(scaled_shape(input_shape, scale)[:2])  # as the network will compute at
        if size >= SCALED_SIDE and size not in sizes:
            sizes.add(size)
            scales.append(round(scale, 4))
    return scales if len(scales) > 1 else 1.0


def default_space_for(input_shape, dataset: str | None = None) -> str:
    """The default space for `dataset`: a built-in dataset's own; for data of your own,
    by `input_shape`: the series space for `(steps, channels)`, MNIST's for small
    one-channel images, CIFAR-10's for other images.

    Example:
    >>> default_space_for((96, 96, 3)), default_space_for((28, 28, 1), "fashion_mnist")
    ('cifar10', 'fashion_mnist')
    >>> default_space_for((150, 1))
    'series'
    """
    if dataset in DEFAULT_SPACES:
        return dataset
    if len(input_shape) == 2:
        return "series"
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
    for overrides in (_renamed(space or {}), _renamed(dimensions)):
        unknown = set(overrides) - set(resolved)
        if unknown:
            raise ValueError(
                f"Unknown search dimensions {sorted(unknown)}; known: {sorted(resolved)}."
            )
        resolved |= {k: v for k, v in overrides.items() if v is not None or k == "learning_rate"}
    for name in ("blocks_per_stage", "width"):  # 2 and "2" are alike
        values = resolved[name]
        if isinstance(values, list | tuple) and any(isinstance(v, str) for v in values):
            resolved[name] = [str(v) for v in values]
    scale = resolved.get("input_scale")
    if isinstance(scale, list | tuple) and all(isinstance(v, int | float) for v in scale):
        resolved["input_scale"] = [float(v) for v in scale]  # 1 and 0.75 are one type
    for name, spec in resolved.items():
        _check_dimension(name, spec)
    return resolved


def _renamed(dimensions: Mapping) -> dict:
    """`dimensions` under their current names: `se` (a flag) is `se_ratio` (0 or 1/16),
    the spec's field, since 0.3; the old name is taken for one more release."""
    dimensions = dict(dimensions)
    if "se" in dimensions:
        warnings.warn(
            "The search dimension `se` is `se_ratio` now (0.0 or 0.0625, the spec field).",
            DeprecationWarning,
            stacklevel=3,
        )
        flags = dimensions.pop("se")
        ratios = [SE_RATIO if flag else 0.0 for flag in np.atleast_1d(flags).tolist()]
        dimensions["se_ratio"] = ratios if isinstance(flags, list | tuple) else ratios[0]
    return dimensions


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


def _options(spec) -> list:
    """The values a fixed dimension or a list of choices declares."""
    return list(spec) if isinstance(spec, list | tuple) else [spec]


# Dimensions whose values may be strings of numbers (`"8,5,3"`): compared as parsed.
_PARSED = {"kernel_size": kernel_sizes, "blocks_per_stage": stage_blocks, "width": stage_widths}


def _holds(name: str, spec, value) -> bool:
    """Whether dimension `name`, declared as `spec`, can take `value`."""
    if isinstance(spec, Mapping):
        return spec["min"] <= value <= spec["max"]
    return any(_same(name, value, option) for option in _options(spec))


def _same(name: str, value, other) -> bool:
    """Whether two values of dimension `name` are the same (`"1,0,1"` and `"1, 0, 1"`)."""
    parse = _PARSED.get(name)
    return parse(value) == parse(other) if parse else value == other


def _smallest(name: str, values):
    """The value of a dimension that makes the smallest network."""
    if isinstance(values, Mapping):
        return values["min"]
    options = _options(values)
    if name == "kernel_size":  # the fewest kernel taps (one size: two convolutions)

        def taps(value):
            sizes = kernel_sizes(value)
            return sum(sizes) if isinstance(sizes, tuple) else 2 * sizes

        return min(options, key=taps)
    if name == "blocks_per_stage":
        return min(options, key=lambda value: sum(stage_blocks(value, None)))
    if name == "width":  # a convolution's cost grows with its filters squared

        def cost(value):
            widths = stage_widths(value)
            return sum(w * w for w in (widths if len(widths) > 1 else stage_widths(value, 3)))

        return min(options, key=cost)
    cheapest = {"block": "basic", "shortcut": "A", "se_ratio": 0.0}
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
        if self.space.get("input_scale") == "auto":
            self.space["input_scale"] = input_scales(self.input_shape)
        self.space_name = dataset
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

    def baselines(self) -> list[tuple[str, dict]]:
        """The presets this space holds as points (`BASELINES`), each as its name and the
        point's values, in order of preference; none for a space without presets or one
        (narrowed, say) that holds none of them. Each computes at the smallest size the
        space holds (`input_scale`). The toolkit's tuners try the first that the budget
        can train first.

        Example:
        >>> [name for name, _ in ResidualHyperModel((32, 32, 3), 10).baselines()]
        ['fast_cifar_m', 'fast_cifar_s']
        >>> ResidualHyperModel((48, 48, 1), 5, "cifar10").baselines()[1][1]["input_scale"]
        0.6667
        >>> ResidualHyperModel((150, 1), 2, width=[16, 32]).baselines()
        []
        """
        held = []
        for name, point in BASELINES.get(self.space_name, []):
            values = dict(point)
            if "input_scale" in self.space:
                values["input_scale"] = min(_options(self.space["input_scale"]))
            if all(_holds(k, self.space[k], v) for k, v in values.items()):
                held.append((name, values))
        return held

    def preset_name(self, values: dict) -> str | None:
        """The name of the preset (`baselines`) whose point `values` are, at whatever
        size it computes (`input_scale`), if any.

        Example:
        >>> hypermodel = ResidualHyperModel((28, 28, 1), 10)
        >>> hypermodel.preset_name(hypermodel.baselines()[0][1])
        'fast_mnist'
        """
        for name, point in self.baselines():
            point = {k: v for k, v in point.items() if k != "input_scale"}
            if all(k in values and _same(k, values[k], v) for k, v in point.items()):
                return name
        return None

    def over_budget(self, params: int, flops: float) -> str | None:
        """Why a network of `params` parameters and `flops` forward FLOPs per image breaks
        the constraints, or None."""
        if self.max_params and params > self.max_params:
            return f"{params:,} parameters, over max_params={self.max_params:,}"
        if self.max_mflops and flops / 1e6 > self.max_mflops:
            return f"{flops / 1e6:,.1f} MFLOPs, over max_mflops={self.max_mflops:,}"
        return None

    def smallest(self, downsample: str | None = None) -> keras_tuner.HyperParameters:
        """The values of the space's smallest network with `downsample` (default: the
        first declared; pooling, where the space holds it, has the fewest FLOPs).

        Example:
        >>> ResidualHyperModel((28, 28, 1), 10).smallest().values["width"]
        8
        """
        hp = keras_tuner.HyperParameters()
        self.declare(hp)
        for name, values in self.space.items():
            if name in hp.values:
                hp.values[name] = _smallest(name, values)
        if downsample is not None and "downsample" in hp.values:
            hp.values["downsample"] = downsample
        blocks = self.space["blocks_per_stage"]
        if hp.values.get("downsample") == "stride" and isinstance(blocks, list | tuple):
            full = [b for b in blocks if 0 not in stage_blocks(b)]  # a strided stage has blocks
            hp.values["blocks_per_stage"] = _smallest("blocks_per_stage", full or blocks)
        return hp

    def _check_smallest_fits(self) -> None:
        """Refuse a space none of whose smallest networks (one per downsampling: pooling
        has fewer FLOPs, striding fewer parameters) meets the constraints."""
        reasons = []
        for downsample in np.atleast_1d(self.space.get("downsample", "stride")):
            spec = self.spec(self.smallest(str(downsample)))
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
        """The architecture the values in `hp` (or the space's defaults) describe: the
        CIFAR ResNet family (`resnet_cifar_spec`) with the chosen family and spec fields,
        on the head the recipe is tuned for."""
        v = self.declare(hp)
        if len(self.input_shape) == 2:
            return self._series_spec(v)
        chosen = {name: v[name] for name in ARCHITECTURE if name != "blocks_per_stage"}
        depths = stage_blocks(v["blocks_per_stage"], v["stages"])
        widths = stage_widths(v["width"], v["stages"])
        chosen["width"] = widths[0]
        stem, strides = downsampling(scaled_shape(self.input_shape, v["input_scale"]), v["stages"])
        pool = v["downsample"] == "pool"
        if pool and stem == "cifar":  # the speed family's layout: whitened 2x2 patches, and
            stem, strides = "whiten", (2,) * v["stages"]  # every stage pools (32 -> 31, ..., 3)
        spec = resnet_cifar_spec(
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            stem=stem,
            strides=strides,
            norm=self.norm,
            blocks_per_stage=1,
            **self.head,
            **chosen,
        )
        layers = sum(depths) * (2 if v["block"] == "basic" else 3) + 2
        width = str(v["width"]).replace(",", "-")
        name = f"{'preact_' if v['preact'] else ''}resnet{layers}_w{width}" + "_pool" * pool
        name = self.preset_name(v) or name
        if spec.input_scale != 1:
            name += f"_at{min(spec.scaled_shape[:2])}"
        filters = tuple(w * v["widen_factor"] for w in widths)
        return spec.replace(depths=depths, filters=filters, name=name)

    def _series_spec(self, v: dict) -> ResNetSpec:
        """A series trial's architecture: the `resnet_series_spec` family."""
        chosen = {name: v[name] for name in SERIES_ARCHITECTURE if name != "blocks_per_stage"}
        chosen["kernel_size"] = sizes = kernel_sizes(v["kernel_size"])
        depths = stage_blocks(v["blocks_per_stage"], v["stages"])
        spec = resnet_series_spec(self.input_shape, self.num_classes, norm=self.norm, **chosen)
        kernels = "-".join(map(str, sizes)) if isinstance(sizes, tuple) else f"{sizes}x2"
        name = f"resnet_series{sum(depths)}_w{v['width']}_k{kernels}"
        return spec.replace(depths=depths, name=self.preset_name(v) or name)

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

    def fit(self, hp, model, x, y=None, **kwargs):
        """Train a trial's model (`trials.fit_trial`): on a `Dataset` with `train`, else on
        `x`, `y`, `validation_data` as `model.fit` takes them with `fit_with_recipe`.
        Returns the trial's record: the best of each metric over the epochs, parameters,
        FLOPs, seconds and the next epoch."""
        return fit_trial(self, hp, model, x, y, **kwargs)
