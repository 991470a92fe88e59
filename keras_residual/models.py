"""The families of the papers as spec makers, and builders that turn them into models.

Each `*_spec` function turns a paper's parameters (depth, widen factor, cardinality, ...)
into a `ResNetSpec` or `DenseNetSpec`; any other keyword is a field of that spec. Each
builder of the same name without `_spec` takes the same arguments plus `dtype` and returns
`build_network(spec, dtype)`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import keras

from keras_residual import _checks
from keras_residual.network import build_network
from keras_residual.spec import BLOCKS, DenseNetSpec, Norm, ResNetSpec, Spec

IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
KERAS_BN_EPSILON = 1.001e-5  # keras.applications' ResNets


def _blocks_per_stage(depth, *, per_block: int, extra: int, rule: str, stages: int = 3) -> int:
    step = stages * per_block
    valid = isinstance(depth, int) and not isinstance(depth, bool)
    blocks, rest = divmod(depth - extra, step) if valid else (0, 1)
    if rest or blocks < 1:
        examples = ", ".join(str(step * n + extra) for n in (1, 2, 3, 5, 9))
        raise ValueError(f"`depth` must be {rule} ({examples}, ...), got {depth!r}.")
    return blocks


def _plain(plain: bool, fields: dict) -> dict:
    """`plain=True` is `shortcut="none"`: the same network without shortcuts."""
    if _checks.flag("plain", plain):
        fields["shortcut"] = "none"
    return fields


def resnet_cifar_spec(
    depth: int | None = None,
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    *,
    width: int = 16,
    widen_factor: int = 1,
    stages: int = 3,
    block: str = "basic",
    plain: bool = False,
    name: str | None = None,
    blocks_per_stage: int | None = None,
    **fields,
) -> ResNetSpec:
    """The CIFAR ResNet of He et al. (2016): depth 6n+2 (basic) or 9n+2 (bottleneck).

    Args:
        depth: layers with weights: `stages * n * (2 or 3) + 2` (default 20).
        input_shape, num_classes: of the data.
        width: the stem's filters; stage `i` has `width * widen_factor * 2**i`.
        widen_factor: widens every stage (Wide ResNets).
        stages: how many (3 in the paper); each after the first halves the resolution.
        block: `"basic"` or `"bottleneck"`.
        plain: no shortcuts (`shortcut="none"`): the paper's plain twin.
        name: the model's name (default `resnet{depth}` or `plain{depth}`).
        blocks_per_stage: `n`, instead of `depth` (the search's dimension).
        **fields: any other `ResNetSpec` field: `shortcut` (`"A"`, the paper's CIFAR choice,
            `"B"`, `"C"`, `"gated"`), `preact`, `se_ratio`, `norm`, `include_top`, or the
            layout's `stem` and `strides` (the speed family's pooling layout, say).

    Example:
    >>> spec = resnet_cifar_spec(20, shortcut="A")
    >>> spec.depths, spec.filters
    ((3, 3, 3), (16, 32, 64))
    """
    _checks.positive_int("stages", stages)
    per_block = 2 if _checks.choice("block", block, BLOCKS) == "basic" else 3
    if blocks_per_stage is not None:
        n = _checks.positive_int("blocks_per_stage", blocks_per_stage)
        if depth is not None and depth != stages * n * per_block + 2:
            raise ValueError(
                f"`depth` {depth} and `blocks_per_stage` {n} disagree: give one of them."
            )
        depth = stages * n * per_block + 2
    depth = 20 if depth is None else depth
    rule = f"{stages * per_block}n+2"
    n = _blocks_per_stage(depth, per_block=per_block, extra=2, rule=rule, stages=stages)
    _checks.positive_int("width", width)
    _checks.positive_int("widen_factor", widen_factor)
    layout = {
        "name": name or f"{'plain' if plain else 'resnet'}{depth}",
        "stem": "cifar",
        "stem_filters": width,
        "block": block,
        "depths": (n,) * stages,
        "filters": tuple(width * widen_factor * 2**i for i in range(stages)),
        "strides": (1,) + (2,) * (stages - 1),
    }
    fields = _plain(plain, fields)
    return ResNetSpec(input_shape=input_shape, num_classes=num_classes, **{**layout, **fields})


def wide_resnet_spec(
    depth: int = 28,
    widen_factor: int = 10,
    dropout_rate: float = 0.0,
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    **fields,
) -> ResNetSpec:
    """WRN-d-k (Zagoruyko & Komodakis, 2016): pre-activation basic blocks, depth 6n+4.

    Args:
        depth: 6n+4 (WRN counts the projection convolutions too).
        widen_factor: k, the widening of every stage.
        dropout_rate: between each block's convolutions (0.3 in the paper).
        input_shape, num_classes: of the data.
        **fields: as for `resnet_cifar_spec` (`preact` defaults to True).

    Example:
    >>> wide_resnet_spec(16, widen_factor=2).name
    'wrn16_2'
    """
    n = _blocks_per_stage(depth, per_block=2, extra=4, rule="6n+4")
    fields.setdefault("name", f"wrn{depth}_{widen_factor}")
    fields.setdefault("preact", True)
    # WRN depth also counts the projection convolutions: WRN-(6n+4) = ResNet-(6n+2) widened.
    return resnet_cifar_spec(
        6 * n + 2,
        input_shape,
        num_classes,
        widen_factor=widen_factor,
        dropout_rate=dropout_rate,
        **fields,
    )


def resnext_spec(
    depth: int = 29,
    cardinality: int = 8,
    base_width: int = 64,
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    **fields,
) -> ResNetSpec:
    """CIFAR ResNeXt-d (Xie et al., 2017): grouped bottlenecks, depth 9n+2, 64-filter stem.

    Args:
        depth: 9n+2.
        cardinality: groups of the 3x3 convolutions.
        base_width: d, the width per group at 64 filters.
        input_shape, num_classes: of the data.
        **fields: as for `resnet_cifar_spec` (`width` defaults to 64).

    Example:
    >>> resnext_spec(29, cardinality=2, base_width=4).name
    'resnext29_2x4d'
    """
    fields.setdefault("width", 64)
    fields.setdefault("name", f"resnext{depth}_{cardinality}x{base_width}d")
    return resnet_cifar_spec(
        depth,
        input_shape,
        num_classes,
        block="bottleneck",
        groups=cardinality,
        base_width=base_width,
        **fields,
    )


def highway_spec(
    depth: int = 20,
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    **fields,
) -> ResNetSpec:
    """A CIFAR ResNet whose shortcuts are Highway carry gates (`T*F(x) + (1-T)*x`).

    Args: as `resnet_cifar_spec`, with `shortcut="gated"`.

    Example:
    >>> highway_spec(8).shortcut
    'gated'
    """
    fields.setdefault("name", f"highway{depth}")
    return resnet_cifar_spec(depth, input_shape, num_classes, shortcut="gated", **fields)


def keras_applications_compatible(spec: ResNetSpec) -> ResNetSpec:
    """`spec` changed to reproduce `keras.applications.ResNet*` / `ResNet*V2` exactly:
    biased convolutions, the stride on the first 1x1 (v1) or on each stage's last block
    (v2), BN epsilon 1.001e-5. Weights then port with `port_keras_applications_weights`.

    Example:
    >>> keras_applications_compatible(resnet_spec(50)).stride_in_1x1
    True
    """
    if (
        spec.block != "bottleneck"
        or spec.groups != 1
        or spec.stem != "imagenet"
        or spec.avg_down
        or len(spec.depths) != 4
    ):
        raise ValueError(
            "`keras_compat` reproduces keras.applications' plain bottleneck ResNets: "
            "depth 50/101/152 without groups, deep_stem or avg_down."
        )
    changes = {"stem_bias": True, "norm": Norm(spec.norm.momentum, KERAS_BN_EPSILON)}
    if spec.preact:
        changes |= {"use_bias": "auto", "stride_at": "last", "strides": (2, 2, 2, 1)}
    else:
        changes |= {"use_bias": True, "stride_in_1x1": True}
    return spec.replace(**changes)


def resnet_spec(
    depth: int = 50,
    input_shape: Sequence[int | None] = (224, 224, 3),
    num_classes: int = 1000,
    *,
    width: int = 64,
    deep_stem: bool = False,
    keras_compat: bool = False,
    plain: bool = False,
    name: str | None = None,
    **fields,
) -> ResNetSpec:
    """The 4-stage ImageNet ResNet-18/34/50/101/152, v1 or pre-activation v2.

    Defaults follow torchvision (bias-free convolutions, stride on the 3x3, BN epsilon
    1e-5), so parameter counts match it exactly.

    Args:
        depth: 18, 34, 50, 101 or 152.
        input_shape, num_classes: of the data.
        width: the stem's filters; stage `i` has `width * 2**i`.
        deep_stem: three 3x3 convolutions instead of one 7x7 (with `avg_down=True`: ResNet-D).
        keras_compat: reproduce `keras.applications.ResNet50`/`ResNet50V2` exactly
            (see `keras_applications_compatible`).
        plain: no shortcuts.
        name: the model's name (default `resnet{depth}`, `preact_resnet{depth}`, ...).
        **fields: any other `ResNetSpec` field (`preact`, `groups`/`base_width` for
            ResNeXt, `se_ratio`, `avg_down`, `shortcut`, ...).

    Example:
    >>> resnet_spec(18).depths
    (2, 2, 2, 2)
    """
    if isinstance(depth, bool) or depth not in IMAGENET_DEPTHS:
        raise ValueError(f"`depth` must be one of {sorted(IMAGENET_DEPTHS)}, got {depth!r}.")
    block, depths = IMAGENET_DEPTHS[depth]
    _checks.positive_int("width", width)
    preact = fields.get("preact", False)
    default_name = f"{'preact_' if preact else ''}{'plain' if plain else 'resnet'}{depth}"
    fields.setdefault("norm", Norm(epsilon=1e-5))
    spec = ResNetSpec(
        name=name or default_name,
        input_shape=input_shape,
        num_classes=num_classes,
        stem="deep" if _checks.flag("deep_stem", deep_stem) else "imagenet",
        stem_filters=width,
        block=block,
        depths=depths,
        filters=tuple(width * 2**i for i in range(4)),
        strides=(1, 2, 2, 2),
        **_plain(plain, fields),
    )
    return keras_applications_compatible(spec) if keras_compat else spec


def densenet_spec(
    depth: int = 100,
    growth_rate: int = 12,
    compression: float = 0.5,
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    *,
    bottleneck: bool = True,
    name: str | None = None,
    **fields,
) -> DenseNetSpec:
    """CIFAR DenseNet(-BC) (Huang et al., 2017): 3 dense blocks, depth 3n+4 (6n+4 with
    bottlenecks).

    Args:
        depth: layers with weights.
        growth_rate: k, channels each unit adds.
        compression: the fraction of channels a transition keeps (`< 1` with bottlenecks: BC).
        input_shape, num_classes: of the data.
        bottleneck: 1x1 reduction in each unit (DenseNet-B).
        name: the model's name (default `densenet[_bc]{depth}_k{growth_rate}`).
        **fields: any other `DenseNetSpec` field (`dropout_rate`, `norm`, ...).

    Example:
    >>> densenet_spec(40, growth_rate=12, bottleneck=False).name
    'densenet40_k12'
    """
    per_layer = 2 if _checks.flag("bottleneck", bottleneck) else 1
    n = _blocks_per_stage(depth, per_block=per_layer, extra=4, rule=f"{3 * per_layer}n+4")
    _checks.positive_int("growth_rate", growth_rate)
    bc = "_bc" if bottleneck and compression < 1 else ""
    return DenseNetSpec(
        name=name or f"densenet{bc}{depth}_k{growth_rate}",
        input_shape=input_shape,
        num_classes=num_classes,
        depths=(n, n, n),
        growth_rate=growth_rate,
        bottleneck=bottleneck,
        compression=compression,
        stem_filters=2 * growth_rate if bottleneck else 16,
        **fields,
    )


def resnet_series_spec(
    input_shape: Sequence[int | None] = (None, 1),
    num_classes: int = 2,
    *,
    width: int = 64,
    stages: int = 3,
    blocks_per_stage: int = 1,
    kernel_size: int | Sequence[int] = (8, 5, 3),
    plain: bool = False,
    name: str | None = None,
    **fields,
) -> ResNetSpec:
    """The ResNet for time-series classification of Wang et al. (2017): blocks of three
    convolutions (kernels 8, 5, 3) at 64, 128 and 128 filters, no stem and no striding,
    global average pooling; shortcuts project where the channels change and pass through
    a batch norm where they do not, and convolutions have biases, as in the reference Keras
    implementation (Ismail Fawaz et al. 2019).

    Args:
        input_shape: `(steps, channels)`; steps may be None (any length).
        num_classes: classes of the classifier.
        width: the first stage's filters; later stages have twice as many.
        stages: stages of blocks.
        blocks_per_stage: blocks in each stage.
        kernel_size: the kernel sizes of a block's convolutions (one integer: two
            convolutions of that size).
        plain: the same network without shortcuts.
        name: the model's name (default `resnet_series` or `plain_series`).
        **fields: other `ResNetSpec` fields.

    Example:
    >>> spec = resnet_series_spec((150, 1), 2)
    >>> spec.depths, spec.filters, spec.kernel_size, spec.rank
    ((1, 1, 1), (64, 128, 128), (8, 5, 3), 1)
    """
    _checks.positive_int("width", width)
    _checks.positive_int("stages", stages)
    _checks.positive_int("blocks_per_stage", blocks_per_stage)
    kernel_size = kernel_size if isinstance(kernel_size, int) else tuple(kernel_size)
    defaults = {
        "name": name or ("plain_series" if plain else "resnet_series"),
        "input_shape": tuple(input_shape),
        "num_classes": num_classes,
        "stem": "none",
        "depths": (blocks_per_stage,) * stages,
        "filters": tuple(width * (1 if s == 0 else 2) for s in range(stages)),
        "strides": (1,) * stages,
        "kernel_size": kernel_size,
        "identity_norm": True,
        "use_bias": True,
    }
    return ResNetSpec(**_plain(plain, {**defaults, **fields}))


def tcn_spec(
    input_shape: Sequence[int | None] = (None, 1),
    num_classes: int = 2,
    *,
    levels: int = 6,
    width: int = 64,
    kernel_size: int = 3,
    dropout_rate: float = 0.0,
    plain: bool = False,
    name: str | None = None,
    **fields,
) -> ResNetSpec:
    """A residual temporal convolutional network (Bai et al. 2018): `levels` blocks of two
    dilated causal convolutions, the dilation doubling per level (1, 2, 4, ...), a 1x1
    projection where the channels change, global average pooling. Batch norm stands in for
    the paper's weight norm. Its receptive field, `spec.receptive_field`, is
    `1 + 2 * (kernel_size - 1) * (2**levels - 1)` steps.

    Args:
        input_shape: `(steps, channels)`; steps may be None.
        num_classes: classes of the classifier.
        levels: blocks, each with twice the previous dilation.
        width: filters of every block.
        kernel_size: of the causal convolutions.
        dropout_rate: dropout between a block's convolutions (the paper's 0.05-0.2).
        plain: the same network without shortcuts.
        name: the model's name (default `tcn` or `plain_tcn`).
        **fields: other `ResNetSpec` fields.

    Example:
    >>> spec = tcn_spec((150, 1), 2)
    >>> spec.dilations, spec.receptive_field
    ((1, 2, 4, 8, 16, 32), 253)
    """
    _checks.positive_int("levels", levels)
    _checks.positive_int("width", width)
    _checks.positive_int("kernel_size", kernel_size)
    defaults = {
        "name": name or ("plain_tcn" if plain else "tcn"),
        "input_shape": tuple(input_shape),
        "num_classes": num_classes,
        "stem": "none",
        "depths": (1,) * levels,
        "filters": (width,) * levels,
        "strides": (1,) * levels,
        "dilations": tuple(2**level for level in range(levels)),
        "kernel_size": (kernel_size, kernel_size),
        "causal": True,
        "dropout_rate": dropout_rate,
        "use_bias": True,
    }
    return ResNetSpec(**_plain(plain, {**defaults, **fields}))


def _builder(make_spec: Callable[..., Spec], summary: str, example: str):
    """The model builder of a spec maker: same arguments plus `dtype`, returns the model."""

    def builder(*args, dtype: str | None = None, **kwargs) -> keras.Model:
        return build_network(make_spec(*args, **kwargs), dtype=dtype)

    signature = inspect.signature(make_spec)
    *named, more = signature.parameters.values()
    dtype = inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=None)
    builder.__signature__ = signature.replace(
        parameters=[*named, dtype, more], return_annotation="keras.Model"
    )
    builder.__name__ = builder.__qualname__ = make_spec.__name__.removesuffix("_spec")
    builder.__doc__ = (
        f"{summary}\n\n    Args: those of `{make_spec.__name__}`, plus `dtype`: a Keras dtype "
        "policy name for the layers (None: Keras's global policy).\n\n"
        f"    Example:\n    {example}\n    "
    )
    return builder


resnet_cifar = _builder(
    resnet_cifar_spec,
    "The CIFAR ResNet-6n+2 of He et al. (2016) as a Keras model.",
    ">>> round(resnet_cifar(20, shortcut='A').count_params() / 1e6, 2)\n    0.27",
)
wide_resnet = _builder(
    wide_resnet_spec,
    "A Wide ResNet (WRN-d-k) as a Keras model.",
    ">>> wide_resnet(16, widen_factor=2).name\n    'wrn16_2'",
)
resnext = _builder(
    resnext_spec,
    "A CIFAR ResNeXt as a Keras model.",
    ">>> resnext(29, cardinality=2, base_width=4).name\n    'resnext29_2x4d'",
)
highway = _builder(
    highway_spec,
    "A CIFAR ResNet with Highway carry-gate shortcuts as a Keras model.",
    ">>> highway(8).get_layer('stage1_block1').gate is not None\n    True",
)
resnet = _builder(
    resnet_spec,
    "An ImageNet ResNet-18/34/50/101/152 (v1 or v2) as a Keras model.",
    ">>> resnet(18).get_layer('stage4_block2').filters\n    512",
)
densenet = _builder(
    densenet_spec,
    "A CIFAR DenseNet(-BC) as a Keras model.",
    ">>> densenet(40, growth_rate=12, bottleneck=False).name\n    'densenet40_k12'",
)
resnet_series = _builder(
    resnet_series_spec,
    "The time-series ResNet of Wang et al. (2017) as a Keras model.",
    ">>> resnet_series((150, 1), 2).count_params()\n    506818",
)
tcn = _builder(
    tcn_spec,
    "A residual temporal convolutional network (Bai et al. 2018) as a Keras model.",
    ">>> tcn((150, 1), 2).get_layer('stage6_block1').dilation_rate\n    32",
)
