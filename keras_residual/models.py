"""Functional builders for the ResNet family: one configurable network, many papers.

Every builder returns a functional `keras.Model` with stable layer names:
`stem_conv`, `stage{s}_block{b}` (its sublayers `stage{s}_block{b}_conv1`, ...),
`post_bn`, `avg_pool`, `predictions`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from keras_residual import _checks, _convs
from keras_residual.blocks import BasicBlock, BottleneckBlock
from keras_residual.dense import DenseBlock, Transition
from keras_residual.precision import dtype_policy_scope

BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}
# Builder-level shortcut options (He et al. 2016, sec. 3.3) -> block-level kinds.
SHORTCUTS = {"projection": "auto", "pad": "pad", "all_projection": "projection", "gated": "gated"}
POOLINGS = (None, "avg", "max")
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
KERAS_BN_EPSILON = 1.001e-5  # keras.applications' ResNets


def _check_input_shape(input_shape: Sequence[int | None], downsamples: int) -> tuple:
    if len(input_shape) != 3:
        raise ValueError(
            f"`input_shape` must be (height, width, channels), got {tuple(input_shape)!r}."
        )
    smallest = 2**downsamples
    if any(d is not None and d < smallest for d in input_shape[:2]):
        raise ValueError(
            f"`input_shape` {tuple(input_shape)} is too small: {downsamples} stride-2 "
            f"stages need at least {smallest}x{smallest} pixels."
        )
    return tuple(input_shape)


def _blocks_per_stage(depth, *, per_block: int, extra: int, rule: str, stages: int = 3) -> int:
    step = stages * per_block
    blocks, rest = divmod(depth - extra, step) if isinstance(depth, int) else (0, 1)
    if isinstance(depth, bool) or rest or blocks < 1:
        examples = ", ".join(str(step * n + extra) for n in (1, 2, 3, 5, 9))
        raise ValueError(f"`depth` must be {rule} ({examples}, ...), got {depth!r}.")
    return blocks


def _stem(x, filters: int, *, kind: str, preact: bool, use_bias: bool, bn: dict):
    """`cifar`: one 3x3 conv; `imagenet`: 7x7/2 conv + 3x3/2 max-pool; `deep`: 3x(3x3) + pool."""
    if kind == "deep":
        for i, width in enumerate((filters // 2, filters // 2, filters), start=1):
            strides = 2 if i == 1 else 1
            if strides > 1:
                x = keras.layers.ZeroPadding2D(1, name=f"stem_pad{i}")(x)
            x = _convs.conv2d(width, 3, strides=strides, use_bias=use_bias, name=f"stem_conv{i}")(x)
            if i < 3 or not preact:
                x = _convs.batch_norm(name=f"stem_bn{i}", **bn)(x)
                x = keras.layers.Activation("relu", name=f"stem_relu{i}")(x)
    else:
        imagenet = kind == "imagenet"
        if imagenet:
            x = keras.layers.ZeroPadding2D(3, name="stem_pad")(x)
        x = keras.layers.Conv2D(
            filters,
            7 if imagenet else 3,
            strides=2 if imagenet else 1,
            padding="valid" if imagenet else "same",
            use_bias=use_bias,
            kernel_initializer="he_normal",
            name="stem_conv",
        )(x)
        if not preact:
            x = _convs.batch_norm(name="stem_bn", **bn)(x)
            x = keras.layers.Activation("relu", name="stem_relu")(x)
    if kind in ("imagenet", "deep"):
        x = keras.layers.ZeroPadding2D(1, name="pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    return x


def _stages(
    x,
    *,
    block: str,
    depths: Sequence[int],
    filters: Sequence[int],
    strides: Sequence[int],
    shortcut: str,
    drop_path_rate: float,
    stride_at: str = "first",
    **block_kwargs,
):
    """Stack residual stages; drop-path grows linearly with depth (Huang et al., 2016)."""
    block_class, total, index = BLOCKS[block], sum(depths), 0
    for s, (count, width, stage_strides) in enumerate(
        zip(depths, filters, strides, strict=True), 1
    ):
        for b in range(1, count + 1):
            strided = b == (1 if stride_at == "first" else count)
            kind = shortcut
            if stride_at == "last" and strided and kind == "auto" and stage_strides > 1:
                kind = "pad"  # keras.applications' ResNetV2 subsamples the identity
            x = block_class(
                width,
                stage_strides if strided else 1,
                shortcut=kind,
                drop_path_rate=drop_path_rate * index / max(total - 1, 1),
                name=f"stage{s}_block{b}",
                **block_kwargs,
            )(x)
            index += 1
    return x


def _head(x, *, post_norm, include_top, pooling, num_classes, classifier_activation, bn):
    if post_norm:
        x = _convs.batch_norm(name="post_bn", **bn)(x)
        x = keras.layers.Activation("relu", name="post_relu")(x)
    if include_top or pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    if include_top:
        x = keras.layers.Dense(
            num_classes, activation=classifier_activation, dtype="float32", name="predictions"
        )(x)
    return x


def _check_head(include_top, pooling, num_classes):
    _checks.choice("pooling", pooling, POOLINGS)
    if include_top:
        _checks.positive_int("num_classes", num_classes)


def _residual_network(
    *,
    name: str,
    input_shape,
    num_classes: int,
    stem: str,
    stem_filters: int,
    block: str,
    depths: Sequence[int],
    filters: Sequence[int],
    strides: Sequence[int],
    preact: bool,
    shortcut: str,
    plain: bool,
    include_top: bool,
    pooling: str | None,
    classifier_activation,
    drop_path_rate: float,
    bn_momentum: float,
    bn_epsilon: float,
    dtype: str | None,
    stem_bias: bool = False,
    stride_at: str = "first",
    **block_kwargs,
) -> keras.Model:
    """Assemble stem -> residual stages -> head as one functional model."""
    _checks.choice("block", block, BLOCKS)
    _checks.choice("shortcut", shortcut, SHORTCUTS)
    _check_head(include_top, pooling, num_classes)
    _checks.rate("drop_path_rate", drop_path_rate)
    downsamples = sum(s > 1 for s in strides) + (2 if stem != "cifar" else 0)
    input_shape = _check_input_shape(input_shape, downsamples)
    bn = {"momentum": bn_momentum, "epsilon": bn_epsilon}
    with dtype_policy_scope(dtype):
        inputs = keras.Input(input_shape, name="inputs")
        x = _stem(inputs, stem_filters, kind=stem, preact=preact, use_bias=stem_bias, bn=bn)
        x = _stages(
            x,
            block=block,
            depths=depths,
            filters=filters,
            strides=strides,
            stride_at=stride_at,
            shortcut="none" if plain else SHORTCUTS[shortcut],
            drop_path_rate=drop_path_rate,
            preact=preact,
            bn_momentum=bn_momentum,
            bn_epsilon=bn_epsilon,
            **block_kwargs,
        )
        x = _head(
            x,
            post_norm=preact,
            include_top=include_top,
            pooling=pooling,
            num_classes=num_classes,
            classifier_activation=classifier_activation,
            bn=bn,
        )
        return keras.Model(inputs, x, name=name)


def resnet_cifar(
    depth: int = 20,
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    *,
    width: int = 16,
    widen_factor: int = 1,
    stages: int = 3,
    block: str = "basic",
    preact: bool = False,
    shortcut: str = "projection",
    plain: bool = False,
    groups: int = 1,
    base_width: int = 64,
    se_ratio: float = 0.0,
    drop_path_rate: float = 0.0,
    dropout_rate: float = 0.0,
    zero_init_residual: bool = False,
    include_top: bool = True,
    pooling: str | None = "avg",
    classifier_activation="softmax",
    bn_momentum: float = 0.9,
    bn_epsilon: float = 1e-3,
    dtype: str | None = None,
    name: str | None = None,
) -> keras.Model:
    """The 3-stage CIFAR ResNet of He et al. (2016): depth 6n+2 (basic) or 9n+2 (bottleneck).

    `width` is the stem's filters; stage `i` has `width * widen_factor * 2**i` filters.
    `stages` (3 in the paper) sets how many; each after the first halves the resolution.
    `shortcut`: `"pad"` (option A, the paper's CIFAR choice), `"projection"` (B),
    `"all_projection"` (C) or `"gated"` (Highway). `plain=True` drops every shortcut.
    `dtype` is the layers' Keras dtype policy; None means `default_dtype_policy()`
    (bfloat16 compute with float32 weights on CPUs that do bfloat16 natively).

    Example:
    >>> model = resnet_cifar(20, shortcut="pad")
    >>> round(model.count_params() / 1e6, 2)
    0.27
    """
    _checks.positive_int("stages", stages)
    per_block = 2 if block == "basic" else 3
    rule = f"{stages * per_block}n+2"
    n = _blocks_per_stage(depth, per_block=per_block, extra=2, rule=rule, stages=stages)
    _checks.positive_int("width", width)
    _checks.positive_int("widen_factor", widen_factor)
    return _residual_network(
        name=name or f"{'plain' if plain else 'resnet'}{depth}",
        input_shape=input_shape,
        num_classes=num_classes,
        stem="cifar",
        stem_filters=width,
        block=block,
        depths=(n,) * stages,
        filters=tuple(width * widen_factor * 2**i for i in range(stages)),
        strides=(1,) + (2,) * (stages - 1),
        preact=preact,
        shortcut=shortcut,
        plain=plain,
        include_top=include_top,
        pooling=pooling,
        classifier_activation=classifier_activation,
        drop_path_rate=drop_path_rate,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        groups=groups,
        base_width=base_width,
        se_ratio=se_ratio,
        dropout_rate=dropout_rate,
        zero_init_residual=zero_init_residual,
        dtype=dtype,
    )


def wide_resnet(
    depth: int = 28,
    widen_factor: int = 10,
    dropout_rate: float = 0.0,
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    **kwargs,
) -> keras.Model:
    """WRN-d-k (Zagoruyko & Komodakis, 2016): pre-activation basic blocks, depth 6n+4.

    Example:
    >>> model = wide_resnet(16, widen_factor=2)
    >>> model.name
    'wrn16_2'
    """
    n = _blocks_per_stage(depth, per_block=2, extra=4, rule="6n+4")
    kwargs.setdefault("name", f"wrn{depth}_{widen_factor}")
    kwargs.setdefault("preact", True)
    # WRN depth also counts the projection convolutions: WRN-(6n+4) = ResNet-(6n+2) widened.
    return resnet_cifar(
        6 * n + 2,
        input_shape,
        num_classes,
        widen_factor=widen_factor,
        dropout_rate=dropout_rate,
        **kwargs,
    )


def resnext(
    depth: int = 29,
    cardinality: int = 8,
    base_width: int = 64,
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    **kwargs,
) -> keras.Model:
    """CIFAR ResNeXt-d (Xie et al., 2017): grouped bottlenecks, depth 9n+2, 64-filter stem.

    Example:
    >>> resnext(29, cardinality=2, base_width=4).name
    'resnext29_2x4d'
    """
    return resnet_cifar(
        depth,
        input_shape,
        num_classes,
        block="bottleneck",
        width=kwargs.pop("width", 64),
        groups=cardinality,
        base_width=base_width,
        name=kwargs.pop("name", f"resnext{depth}_{cardinality}x{base_width}d"),
        **kwargs,
    )


def highway(
    depth: int = 20,
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    **kwargs,
) -> keras.Model:
    """A CIFAR ResNet whose shortcuts are Highway carry gates (`T*F(x) + (1-T)*x`).

    Example:
    >>> highway(8).get_layer("stage1_block1").gate is not None
    True
    """
    name = kwargs.pop("name", f"highway{depth}")
    return resnet_cifar(depth, input_shape, num_classes, shortcut="gated", name=name, **kwargs)


def resnet(
    depth: int = 50,
    input_shape: Sequence[int | None] = (224, 224, 3),
    num_classes: int = 1000,
    *,
    preact: bool = False,
    width: int = 64,
    groups: int = 1,
    base_width: int = 64,
    deep_stem: bool = False,
    avg_down: bool = False,
    keras_compat: bool = False,
    shortcut: str = "projection",
    plain: bool = False,
    se_ratio: float = 0.0,
    drop_path_rate: float = 0.0,
    zero_init_residual: bool = False,
    include_top: bool = True,
    pooling: str | None = "avg",
    classifier_activation="softmax",
    bn_momentum: float = 0.9,
    bn_epsilon: float | None = None,
    dtype: str | None = None,
    name: str | None = None,
) -> keras.Model:
    """The 4-stage ImageNet ResNet-18/34/50/101/152, v1 or pre-activation v2.

    Defaults follow torchvision (bias-free convolutions, stride on the 3x3).
    `keras_compat=True` reproduces `keras.applications.ResNet50`/`ResNet50V2` exactly
    (biased convolutions, stride on the first 1x1 or the last block, BN epsilon
    1.001e-5), so their weights port with `port_keras_applications_weights`; such a
    model follows Keras's global dtype policy, as keras.applications does. Otherwise
    `dtype=None` means `default_dtype_policy()`.
    `deep_stem` + `avg_down` give ResNet-D; `groups`/`base_width` give ResNeXt.

    Example:
    >>> resnet(18).count_params() > 11_000_000
    True
    """
    if isinstance(depth, bool) or depth not in IMAGENET_DEPTHS:
        raise ValueError(f"`depth` must be one of {sorted(IMAGENET_DEPTHS)}, got {depth!r}.")
    block, depths = IMAGENET_DEPTHS[depth]
    _checks.positive_int("width", width)
    compat = {}
    if keras_compat:
        if block != "bottleneck" or groups != 1 or deep_stem or avg_down:
            raise ValueError(
                "`keras_compat` reproduces keras.applications' plain bottleneck ResNets: "
                "depth 50/101/152 without groups, deep_stem or avg_down."
            )
        compat = {"stem_bias": True, "use_bias": "auto" if preact else True}
        if preact:
            compat |= {"stride_at": "last", "strides": (2, 2, 2, 1)}
        else:
            compat |= {"stride_in_1x1": True}
    elif block == "bottleneck":
        compat = {"stride_in_1x1": False}
    default_name = f"{'preact_' if preact else ''}{'plain' if plain else 'resnet'}{depth}"
    return _residual_network(
        name=name or default_name,
        input_shape=input_shape,
        num_classes=num_classes,
        stem="deep" if deep_stem else "imagenet",
        stem_filters=width,
        block=block,
        depths=depths,
        filters=tuple(width * 2**i for i in range(4)),
        strides=compat.pop("strides", (1, 2, 2, 2)),
        preact=preact,
        shortcut=shortcut,
        plain=plain,
        include_top=include_top,
        pooling=pooling,
        classifier_activation=classifier_activation,
        drop_path_rate=drop_path_rate,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon or (KERAS_BN_EPSILON if keras_compat else 1e-5),
        groups=groups,
        base_width=base_width,
        se_ratio=se_ratio,
        zero_init_residual=zero_init_residual,
        avg_down=avg_down,
        dtype=dtype or (keras.config.dtype_policy().name if keras_compat else None),
        **compat,
    )


def densenet(
    depth: int = 100,
    growth_rate: int = 12,
    compression: float = 0.5,
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    *,
    bottleneck: bool = True,
    dropout_rate: float = 0.0,
    include_top: bool = True,
    pooling: str | None = "avg",
    classifier_activation="softmax",
    bn_momentum: float = 0.9,
    bn_epsilon: float = 1e-5,
    dtype: str | None = None,
    name: str | None = None,
) -> keras.Model:
    """CIFAR DenseNet(-BC) (Huang et al., 2017): 3 dense blocks, depth 6n+4 with bottlenecks.

    `dtype=None` means `default_dtype_policy()`, as for `resnet_cifar`.

    Example:
    >>> densenet(40, growth_rate=12, bottleneck=False).name
    'densenet40_k12'
    """
    per_layer = 2 if bottleneck else 1
    n = _blocks_per_stage(depth, per_block=per_layer, extra=4, rule=f"{3 * per_layer}n+4")
    _checks.positive_int("growth_rate", growth_rate)
    _check_head(include_top, pooling, num_classes)
    input_shape = _check_input_shape(input_shape, 2)
    bn = {"bn_momentum": bn_momentum, "bn_epsilon": bn_epsilon}
    bc = "_bc" if bottleneck and compression < 1 else ""
    with dtype_policy_scope(dtype):
        inputs = keras.Input(input_shape, name="inputs")
        x = keras.layers.Conv2D(
            2 * growth_rate if bottleneck else 16,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name="stem_conv",
        )(inputs)
        for s in range(1, 4):
            x = DenseBlock(
                n,
                growth_rate,
                bottleneck=bottleneck,
                dropout_rate=dropout_rate,
                name=f"stage{s}_dense",
                **bn,
            )(x)
            if s < 3:
                x = Transition(compression, name=f"stage{s}_transition", **bn)(x)
        x = _head(
            x,
            post_norm=True,
            include_top=include_top,
            pooling=pooling,
            num_classes=num_classes,
            classifier_activation=classifier_activation,
            bn={"momentum": bn_momentum, "epsilon": bn_epsilon},
        )
        return keras.Model(inputs, x, name=name or f"densenet{bc}{depth}_k{growth_rate}")


BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "resnet_cifar": resnet_cifar,
    "resnet": resnet,
    "wide_resnet": wide_resnet,
    "resnext": resnext,
    "highway": highway,
    "densenet": densenet,
}
