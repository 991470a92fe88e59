"""An architecture as a value: frozen, validated specs shared by presets, builders and search.

A spec says everything about a network but its dtype: input and head, stem, the stages
(blocks per stage, filters, strides), the block and its options, the shortcut option and
the normalisation settings. `build_network(spec)` makes the Keras model; `spec.replace(...)`
changes fields (and validates again); `spec.to_dict()` / `spec_from_dict` round-trip through
JSON.

The vocabulary, the same in blocks, builders, search, CLI and README:
- `shortcut`: He et al.'s options `"A"` (identity; zero-pad where the shape changes),
  `"B"` (identity; 1x1 projection where the shape changes), `"C"` (projection in every
  block), plus `"gated"` (Highway carry gate) and `"none"` (the plain, shortcut-free twin).
- `preact`: a flag (pre-activation "v2" ordering), never a block kind.
- `width`: a family's base width (the stem's filters); `filters`: a stage's (and a block's)
  filters before a bottleneck's expansion; a block's `bottleneck_width`: its inner channels.
- `Norm`: the batch-norm settings (momentum, epsilon) of every norm layer in a network.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from keras_residual import _checks

SHORTCUTS = ("A", "B", "C", "gated", "none")
BLOCKS = ("basic", "bottleneck")
STEMS = ("cifar", "imagenet", "deep", "whiten", "none")
DOWNSAMPLES = ("stride", "pool")
POOLINGS = (None, "avg", "max")
STRIDE_AT = ("first", "last")
BIAS_MODES = (False, True, "auto")
ACTIVATIONS = ("relu", "gelu", "silu")  # the hidden layers' activation (keras.activations)
CONV_INITS = ("he_normal", "dirac")  # keras_residual.initializers.conv_initializer
# Names of the shortcut options before they were unified, for a helpful error message.
_FORMER_SHORTCUTS = {
    "pad": "'A'",
    "auto": "'B'",
    "projection": "'B' (or 'C' to project in every block)",
    "all_projection": "'C'",
    "identity": "'A' or 'B' (both are the identity where shapes match)",
}


def check_shortcut(value: Any) -> str:
    """Return `value` if it names a shortcut option, else raise (hinting at renamed ones).

    Example:
    >>> check_shortcut("A")
    'A'
    """
    if isinstance(value, str) and value in _FORMER_SHORTCUTS:
        raise ValueError(
            f"`shortcut` must be one of {', '.join(map(repr, SHORTCUTS))}; got {value!r}, "
            f"which is now spelled {_FORMER_SHORTCUTS[value]}."
        )
    return _checks.choice("shortcut", value, SHORTCUTS)


@dataclass(frozen=True)
class Norm:
    """Batch-normalisation settings of every norm layer in a network.

    Args:
        momentum: moving-statistics momentum in [0, 1). 0.9 (not Keras's 0.99), so the
            statistics keep up after a short epoch.
        epsilon: the variance floor, a finite number > 0.
        scale: learn a scale (`gamma`) per channel; False: no scale, exactly a scale
            frozen at 1 (airbench's batch norms), also after saving and reloading.

    Example:
    >>> Norm(epsilon=1e-5).layer_kwargs()
    {'bn_momentum': 0.9, 'bn_epsilon': 1e-05, 'bn_scale': True}
    """

    momentum: float = 0.9
    epsilon: float = 1e-3
    scale: bool = True

    def __post_init__(self):
        object.__setattr__(self, "momentum", _checks.rate("momentum", self.momentum))
        object.__setattr__(self, "epsilon", _checks.positive("epsilon", self.epsilon))
        object.__setattr__(self, "scale", _checks.flag("scale", self.scale))

    def layer_kwargs(self) -> dict[str, float | bool]:
        """The same settings as the toolkit's layers take them."""
        return {"bn_momentum": self.momentum, "bn_epsilon": self.epsilon, "bn_scale": self.scale}


def _positive_ints(name: str, values: Any, *, zero: bool = False) -> tuple[int, ...]:
    try:
        values = tuple(values)
    except TypeError:
        message = f"`{name}` must be a sequence of positive integers, got {values!r}."
        raise ValueError(message) from None
    if not values:
        raise ValueError(f"`{name}` must name at least one stage, got ().")
    for value in values:
        (_checks.non_negative_int if zero else _checks.positive_int)(name, value)
    return values


def scaled_shape(input_shape: tuple, input_scale: float) -> tuple:
    """`input_shape` with its sizes (not its channels) scaled by `input_scale` and rounded."""
    if input_scale == 1:
        return tuple(input_shape)
    *size, channels = input_shape
    return (*(max(1, round(side * input_scale)) for side in size), channels)


@dataclass(frozen=True, kw_only=True)
class _Spec:
    """Input, head and normalisation: what every network spec has."""

    name: str = "network"
    input_shape: tuple = (32, 32, 3)
    num_classes: int = 10
    include_top: bool = True
    pooling: str | None = "avg"
    classifier_activation: str | None = "softmax"
    logit_scale: float = 1.0
    norm: Norm = Norm()
    activation: str = "relu"
    input_scale: float = 1.0

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty string, got {self.name!r}.")
        if isinstance(self.norm, dict):
            self._set("norm", Norm(**self.norm))
        if not isinstance(self.norm, Norm):
            raise ValueError(f"`norm` must be a keras_residual.Norm, got {self.norm!r}.")
        self._set("include_top", _checks.flag("include_top", self.include_top))
        _checks.choice("pooling", self.pooling, POOLINGS)
        self._set("logit_scale", _checks.positive("logit_scale", self.logit_scale))
        _checks.choice("activation", self.activation, ACTIVATIONS)
        if self.include_top:
            _checks.positive_int("num_classes", self.num_classes)
        self._validate()
        self._set("input_shape", _checks.input_shape(self.input_shape))
        self._set("input_scale", _checks.positive("input_scale", self.input_scale))
        if self.input_scale != 1 and (self.rank != 2 or None in self.input_shape[:2]):
            raise ValueError(
                f"`input_scale` resizes images of a known size: input_shape {self.input_shape} "
                "is not (height, width, channels) with both sizes given; use 1.0."
            )
        try:
            _checks.input_shape(self.scaled_shape, downsamples=self.downsamples)
        except ValueError as error:
            if self.input_scale == 1:
                raise
            raise ValueError(f"{error} (the input at `input_scale` {self.input_scale:g})") from None
        self._check_rank()

    def _validate(self) -> None:
        """Check (and normalise) the family's own fields."""

    def _check_rank(self) -> None:
        """Check the fields that only some input ranks take (images, sequences, volumes)."""

    @property
    def rank(self) -> int:
        """Spatial dimensions of the input: 1 for sequences, 2 for images, 3 for volumes.

        Example:
        >>> ResNetSpec(input_shape=(150, 1)).rank
        1
        """
        return len(self.input_shape) - 1

    @property
    def scaled_shape(self) -> tuple:
        """The input shape the network computes at: `input_shape` resized by `input_scale`.

        Example:
        >>> ResNetSpec(input_shape=(48, 64, 1), input_scale=2 / 3).scaled_shape
        (32, 43, 1)
        """
        return scaled_shape(self.input_shape, self.input_scale)

    @property
    def downsamples(self) -> int:
        """How many times the network halves the resolution."""
        raise NotImplementedError

    def replace(self, **changes) -> _Spec:
        """A copy with `changes` applied, validated again.

        Example:
        >>> ResNetSpec().replace(num_classes=5).num_classes
        5
        """
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            close = [n for u in unknown for n in difflib.get_close_matches(u, names, 2, 0.6)]
            hint = f" Did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
            raise ValueError(
                f"{type(self).__name__} has no field {', '.join(map(repr, unknown))}.{hint} "
                f"Fields: {', '.join(names)}."
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples) with the spec's `family`; see `spec_from_dict`."""
        values = dataclasses.asdict(self)
        return {"family": _FAMILY_OF[type(self)], **values}

    def __str__(self) -> str:
        lines = [f"    {f.name}={getattr(self, f.name)!r}," for f in dataclasses.fields(self)]
        return "\n".join([f"{type(self).__name__}(", *lines, ")"])


@dataclass(frozen=True, kw_only=True)
class ResNetSpec(_Spec):
    """A residual network: stem, stages of residual blocks, head.

    Args:
        name: the Keras model's name.
        input_shape: `(height, width, channels)` for images (height and width may be
            None); `(steps, channels)` for sequences and `(depth, height, width,
            channels)` for volumes build the same network with 1D or 3D layers.
        num_classes: classes of the `predictions` layer (with `include_top`).
        include_top: end in global pooling and a float32 `Dense` classifier.
        pooling: the global pooling, `"avg"` or `"max"` (airbench, ResNet-9); without the
            top also `None` (feature maps).
        classifier_activation: the classifier's activation (`None` for logits).
        logit_scale: multiplies the logits before the activation (airbench 1/9: a
            softer softmax that suits its high learning rate).
        norm: batch-norm settings, a `Norm`.
        activation: every hidden layer's activation: `"relu"`, `"gelu"` (airbench; the
            exact, erf form) or `"silu"`.
        input_scale: images only: the network first resizes its input by this factor
            (bilinear, an `input_resize` layer) and computes at that size (`scaled_shape`):
            `2 / 3` takes 48x48 images at 32x32, for less than half the FLOPs.
        stem: `"cifar"` (one 3x3 conv), `"imagenet"` (7x7/2 conv and 3x3/2 max-pool),
            `"deep"` (three 3x3 convs and a max-pool: ResNet-C/D), `"whiten"` (a
            `PatchWhitening` 2x2 layer and the activation, set from the data by `train`;
            images only) or `"none"` (the first block takes the input: Wang et al. 2017).
        stem_filters: filters of the stem's (last) convolution (the whitening stem has
            `8 * channels`, from the data).
        stem_bias: give the stem convolution a bias (keras.applications does).
        block: `"basic"` (two 3x3 convs) or `"bottleneck"` (1x1, 3x3, 1x1 expanding).
        kernel_size: the blocks' spatial kernel size; for basic blocks also one size per
            convolution, e.g. `(8, 5, 3)`: three convolutions a block (Wang et al. 2017).
        depths: blocks per stage (0 allowed with `downsample="pool"`).
        filters: filters per stage (before a bottleneck's `expansion`).
        strides: stride of each stage's strided block (or max-pool).
        dilations: the dilation of each stage's spatial convolutions (None: 1 everywhere;
            a TCN doubles it per stage), in stages with stride 1.
        causal: sequences only: causal convolutions (a step's output sees no later step).
        downsample: `"stride"` (a stage's first or last block is strided) or `"pool"`
            (each stage opens with conv, max-pool by its stride, norm and ReLU, and its
            blocks keep the shape: Page's ResNet-9 and airbench).
        stride_at: `"first"` or `"last"` block of a stage carries the stride.
        preact: pre-activation ("v2") blocks, with a final norm before the head.
        shortcut: `"A"`, `"B"`, `"C"`, `"gated"` or `"none"` (see the module's vocabulary).
        identity_norm: identity shortcuts pass through a batch norm (Wang et al. 2017).
        avg_down: projections average-pool before a stride-1 1x1 conv (ResNet-D).
        groups: grouped 3x3 convolutions (ResNeXt cardinality).
        base_width: ResNeXt's width per group at 64 filters; bottleneck width is
            `filters * base_width / 64 * groups`.
        expansion: a bottleneck block's output is `filters * expansion` channels.
        stride_in_1x1: a bottleneck's stride on its first 1x1 (original paper, Keras).
        se_ratio: squeeze-and-excitation ratio (0: none).
        drop_path_rate: stochastic depth of the last block; grows linearly from 0.
        dropout_rate: dropout between a block's convolutions (Wide ResNet).
        zero_init_residual: each block's last norm (or conv) starts at zero.
        use_bias: conv biases: `False`, `True` or `"auto"` (only where no norm follows).
        conv_init: the convolutions' kernel initializer: `"he_normal"` or `"dirac"` (the
            first filters start as the identity, the rest as PyTorch's default: airbench's
            `initializers.Dirac`; needs `groups=1`).

    Example:
    >>> spec = ResNetSpec(depths=(1, 1), filters=(8, 16), strides=(1, 2), stem_filters=8)
    >>> spec.replace(shortcut="A").shortcut, spec.downsamples
    ('A', 1)
    """

    name: str = "resnet"
    stem: str = "cifar"
    stem_filters: int = 16
    stem_bias: bool = False
    block: str = "basic"
    kernel_size: int | tuple[int, ...] = 3
    depths: tuple[int, ...] = (3, 3, 3)
    filters: tuple[int, ...] = (16, 32, 64)
    strides: tuple[int, ...] = (1, 2, 2)
    dilations: tuple[int, ...] | None = None
    causal: bool = False
    downsample: str = "stride"
    stride_at: str = "first"
    preact: bool = False
    shortcut: str = "B"
    identity_norm: bool = False
    avg_down: bool = False
    groups: int = 1
    base_width: int = 64
    expansion: int = 4
    stride_in_1x1: bool = False
    se_ratio: float = 0.0
    drop_path_rate: float = 0.0
    dropout_rate: float = 0.0
    zero_init_residual: bool = False
    use_bias: bool | str = False
    conv_init: str = "he_normal"

    def _validate(self) -> None:
        _checks.choice("stem", self.stem, STEMS)
        _checks.positive_int("stem_filters", self.stem_filters)
        _checks.choice("block", self.block, BLOCKS)
        self._set("kernel_size", _checks.kernel_sizes("kernel_size", self.kernel_size))
        if isinstance(self.kernel_size, tuple) and self.block != "basic":
            raise ValueError(
                f"`kernel_size` {self.kernel_size} gives one size per convolution, "
                "which only basic blocks take: use one integer with block='bottleneck'."
            )
        _checks.choice("downsample", self.downsample, DOWNSAMPLES)
        for name in ("depths", "filters", "strides"):
            self._set(name, _positive_ints(name, getattr(self, name), zero=name == "depths"))
        if self.downsample == "stride" and 0 in self.depths:
            raise ValueError(
                f"`depths` must be positive with downsample='stride' (a stage's blocks carry "
                f"its stride), got {self.depths}; empty stages need downsample='pool'."
            )
        if not len(self.depths) == len(self.filters) == len(self.strides):
            raise ValueError(
                "`depths`, `filters` and `strides` need one entry per stage, got "
                f"{len(self.depths)}, {len(self.filters)} and {len(self.strides)}."
            )
        if self.dilations is not None:
            self._set("dilations", _positive_ints("dilations", self.dilations))
            if len(self.dilations) != len(self.depths):
                raise ValueError(
                    f"`dilations` needs one entry per stage ({len(self.depths)}), got "
                    f"{self.dilations}."
                )
            pairs = zip(self.dilations, self.strides, strict=True)
            for stage, (dilation, stride) in enumerate(pairs, 1):
                if dilation > 1 and stride > 1:
                    raise ValueError(
                        f"Stage {stage} both dilates and strides: give it `dilations` 1 or "
                        "`strides` 1 (Keras's convolutions take one of them)."
                    )
        _checks.choice("stride_at", self.stride_at, STRIDE_AT)
        check_shortcut(self.shortcut)
        flags = ("stem_bias", "preact", "identity_norm", "avg_down", "stride_in_1x1", "causal")
        for name in (*flags, "zero_init_residual"):
            self._set(name, _checks.flag(name, getattr(self, name)))
        for name in ("groups", "base_width", "expansion"):
            _checks.positive_int(name, getattr(self, name))
        self._set("se_ratio", _checks.rate("se_ratio", self.se_ratio, allow_one=True))
        self._set("drop_path_rate", _checks.rate("drop_path_rate", self.drop_path_rate))
        self._set("dropout_rate", _checks.rate("dropout_rate", self.dropout_rate))
        _checks.choice("use_bias", self.use_bias, BIAS_MODES)
        _checks.choice("conv_init", self.conv_init, CONV_INITS)
        if self.zero_init_residual and not self.preact and not self.norm.scale:
            raise ValueError(
                "`zero_init_residual` starts each block's last batch-norm scale at 0, and "
                "norm=Norm(scale=False) has no scale: set one of them differently."
            )
        if self.conv_init == "dirac" and self.groups > 1:
            raise ValueError(
                f"conv_init='dirac' sets a filter to pass its own input channel through, "
                f"which grouped convolutions (groups={self.groups}) do not see: use "
                "conv_init='he_normal' or groups=1."
            )

    def _check_rank(self) -> None:
        if self.causal and self.rank != 1:
            raise ValueError(
                f"`causal` convolutions are for sequences: input_shape {self.input_shape} is "
                "not (steps, channels)."
            )
        if self.stem == "whiten" and self.rank != 2:
            raise ValueError(
                "stem='whiten' whitens 2x2 image patches: images only; use stem='cifar' or "
                f"'none' for input_shape {self.input_shape}."
            )

    @property
    def downsamples(self) -> int:
        # The whitening stem's valid 2x2 conv loses a pixel: counted as one more halving.
        stem = {"cifar": 0, "none": 0, "whiten": 1}.get(self.stem, 2)
        return sum(s > 1 for s in self.strides) + stem

    @property
    def receptive_field(self) -> int | None:
        """How many input steps (pixels along a side) one position of the last feature map
        sees through the deepest path; None for the stems and the downsampling that pool
        (`imagenet`, `deep`, `whiten`, `downsample="pool"`).

        Example:
        >>> ResNetSpec(input_shape=(100, 1), stem="none", depths=(1, 1), filters=(8, 8),
        ...            strides=(1, 1), dilations=(1, 2), causal=True).receptive_field
        13
        """
        if self.stem not in ("none", "cifar") or self.downsample != "stride":
            return None
        field, jump = (3, 1) if self.stem == "cifar" else (1, 1)
        if self.block == "bottleneck":
            kernels, stride_at = (1, self.kernel_size, 1), 0 if self.stride_in_1x1 else 1
        else:
            kernels = self.kernel_size
            kernels, stride_at = (kernels if isinstance(kernels, tuple) else (kernels,) * 2), 0
        dilations = self.dilations or (1,) * len(self.depths)
        for count, stride, dilation in zip(self.depths, self.strides, dilations, strict=True):
            strided_block = 0 if self.stride_at == "first" else count - 1
            for block in range(count):
                for i, kernel in enumerate(kernels):
                    field += (kernel - 1) * dilation * jump
                    if block == strided_block and i == stride_at:
                        jump *= stride
        return field

    @property
    def post_norm(self) -> bool:
        """Pre-activation networks normalise once more before the head."""
        return self.preact

    def block_kwargs(self) -> dict[str, Any]:
        """The block-layer arguments every block of this network shares."""
        shared = {
            "kernel_size": self.kernel_size,
            "causal": self.causal,
            "identity_norm": self.identity_norm,
            "preact": self.preact,
            "groups": self.groups,
            "base_width": self.base_width,
            "se_ratio": self.se_ratio,
            "dropout_rate": self.dropout_rate,
            "zero_init_residual": self.zero_init_residual,
            "avg_down": self.avg_down,
            "use_bias": self.use_bias,
            "activation": self.activation,
            **self.norm.layer_kwargs(),
        }
        if self.block == "bottleneck":
            shared |= {"expansion": self.expansion, "stride_in_1x1": self.stride_in_1x1}
        return shared

    def scaled(self, multiplier: float) -> ResNetSpec:
        """The same network with every filter count times `multiplier` (kept a multiple of
        `groups`, at least `groups`): thin or wide variants in one call.

        Example:
        >>> ResNetSpec().scaled(0.5).filters
        (8, 16, 32)
        """
        multiplier = _checks.positive("multiplier", multiplier)

        def scale(filters):
            return max(self.groups, round(filters * multiplier / self.groups) * self.groups)

        return self.replace(
            stem_filters=max(1, round(self.stem_filters * multiplier)),
            filters=tuple(scale(f) for f in self.filters),
        )


@dataclass(frozen=True, kw_only=True)
class DenseNetSpec(_Spec):
    """A DenseNet(-BC): stem conv, dense blocks joined by transitions, head.

    Args:
        name, input_shape, num_classes, include_top, pooling, classifier_activation, logit_scale,
            norm, activation, input_scale: as for `ResNetSpec`.
        depths: units per dense block.
        growth_rate: channels each unit adds.
        bottleneck: units start with a 1x1 conv to `4 * growth_rate` (DenseNet-B).
        compression: a transition keeps `floor(compression * channels)` (DenseNet-C).
        dropout_rate: dropout after each unit's convolutions.
        stem_filters: the stem convolution's filters.

    Example:
    >>> DenseNetSpec(depths=(2, 2), growth_rate=4, stem_filters=8).downsamples
    1
    """

    name: str = "densenet"
    norm: Norm = Norm(epsilon=1e-5)
    depths: tuple[int, ...] = (16, 16, 16)
    growth_rate: int = 12
    bottleneck: bool = True
    compression: float = 0.5
    dropout_rate: float = 0.0
    stem_filters: int = 24

    def _validate(self) -> None:
        self._set("depths", _positive_ints("depths", self.depths))
        _checks.positive_int("growth_rate", self.growth_rate)
        self._set("bottleneck", _checks.flag("bottleneck", self.bottleneck))
        compression = _checks.rate("compression", self.compression, allow_one=True)
        if compression == 0:
            raise ValueError("`compression` must be in (0, 1], got 0.")
        self._set("compression", compression)
        self._set("dropout_rate", _checks.rate("dropout_rate", self.dropout_rate))
        _checks.positive_int("stem_filters", self.stem_filters)

    def _check_rank(self) -> None:
        if self.rank != 2:
            raise ValueError(
                "A DenseNetSpec builds image networks: `input_shape` must be (height, "
                f"width, channels), got {self.input_shape}; use a ResNetSpec for "
                "sequences and volumes."
            )

    @property
    def downsamples(self) -> int:
        return len(self.depths) - 1

    @property
    def post_norm(self) -> bool:
        return True

    def block_kwargs(self) -> dict[str, Any]:
        """The layer arguments every dense block and transition of this network shares."""
        return {"activation": self.activation, **self.norm.layer_kwargs()}

    def scaled(self, multiplier: float) -> DenseNetSpec:
        """The same network with growth rate and stem filters times `multiplier`.

        Example:
        >>> DenseNetSpec().scaled(0.5).growth_rate
        6
        """
        multiplier = _checks.positive("multiplier", multiplier)
        return self.replace(
            growth_rate=max(1, round(self.growth_rate * multiplier)),
            stem_filters=max(1, round(self.stem_filters * multiplier)),
        )


Spec = ResNetSpec | DenseNetSpec
_FAMILY_OF = {ResNetSpec: "resnet", DenseNetSpec: "densenet"}
_SPEC_OF = {family: spec for spec, family in _FAMILY_OF.items()}


def spec_from_dict(values: dict[str, Any]) -> Spec:
    """The spec `Spec.to_dict()` wrote (lists become tuples).

    Example:
    >>> spec = ResNetSpec(shortcut="A")
    >>> spec_from_dict(spec.to_dict()) == spec
    True
    """
    if not isinstance(values, dict):
        raise ValueError(f"A spec is a dict with a 'family', got {type(values).__name__}.")
    values = dict(values)
    family = _checks.choice("family", values.pop("family", None), _SPEC_OF)
    cls = _SPEC_OF[family]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls().replace(**values)
