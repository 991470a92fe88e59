"""`build_network(spec)`: a spec in, a functional Keras model out.

The model is assembled from small named pieces with stable layer names: `inputs`,
`input_resize` (at an `input_scale` other than 1), `stem_conv` (`stem_bn`, `stem_relu`,
...) or `stem_whiten`, with `downsample="pool"` each stage's `stage{s}_entry_conv`,
`stage{s}_pool`, `stage{s}_entry_bn`, `stage{s}_entry_relu` (activations are named for
`spec.activation`: `stem_gelu` with GELU), then `stage{s}_block{b}` (whose sublayers are
`stage{s}_block{b}_conv1`, ...), or `stage{s}_dense` / `stage{s}_transition`, then
`post_bn`, `avg_pool`, `predictions`.

The spec's `input_shape` sets the rank: `(steps, channels)` builds the same network with 1D
layers, `(depth, height, width, channels)` with 3D ones.
"""

from __future__ import annotations

import keras

from keras_residual import _convs, activations
from keras_residual.blocks import BasicBlock, BottleneckBlock
from keras_residual.dense import DenseBlock, Transition
from keras_residual.initializers import conv_initializer
from keras_residual.precision import dtype_policy_scope
from keras_residual.resize import Resize
from keras_residual.spec import DenseNetSpec, ResNetSpec, Spec
from keras_residual.whitening import PatchWhitening

BLOCK_LAYERS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


def build_network(spec: Spec, dtype: str | None = None) -> keras.Model:
    """The functional Keras model a `ResNetSpec` or `DenseNetSpec` describes.

    Args:
        spec: the architecture.
        dtype: a Keras dtype policy name for every layer (the classifier stays float32);
            None follows Keras's global policy, as Keras layers do.

    Example:
    >>> from keras_residual.spec import ResNetSpec
    >>> spec = ResNetSpec(depths=(1, 1), filters=(8, 16), strides=(1, 2), stem_filters=8)
    >>> model = build_network(spec.replace(input_shape=(16, 16, 1), num_classes=3))
    >>> model.output_shape, model.get_layer("stage2_block1").strides
    ((None, 3), 2)
    >>> model.spec == spec.replace(input_shape=(16, 16, 1), num_classes=3)  # it keeps its spec
    True
    >>> build_network(spec.replace(input_shape=(150, 1))).get_layer("stem_conv").rank
    1
    """
    if not isinstance(spec, ResNetSpec | DenseNetSpec):
        raise ValueError(f"`spec` must be a ResNetSpec or DenseNetSpec, got {spec!r}.")
    with dtype_policy_scope(dtype):
        inputs = keras.Input(spec.input_shape, name="inputs")
        x = _resized(inputs, spec)
        if isinstance(spec, DenseNetSpec):
            x = _dense_stages(_conv_stem(x, spec.stem_filters, rank=2), spec)
        else:
            x = _residual_stages(_stem(x, spec), spec)
        model = keras.Model(inputs, _head(x, spec), name=spec.name)
    model.spec = spec  # what it was built from: a training run records it (spec.json)
    return model


def _resized(x, spec: Spec):
    """The input at `spec.scaled_shape` (`input_resize`: bilinear, in float32 whatever the
    policy), or as it is at `input_scale` 1."""
    if spec.input_scale == 1:
        return x
    height, width = spec.scaled_shape[:2]
    return Resize(height, width, dtype="float32", name="input_resize")(x)


def _conv_stem(x, filters: int, *, rank: int, use_bias=False, conv_init="he_normal"):
    return _convs.layer("Conv", rank)(
        filters,
        3,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=conv_initializer(conv_init),
        name="stem_conv",
    )(x)


def _norm_activation(x, spec: Spec, suffix: str = ""):
    x = _convs.batch_norm(spec.norm, name=f"stem_bn{suffix}")(x)
    return _activation(x, spec, "stem", suffix)


def _activation(x, spec: Spec, prefix: str, suffix: str = ""):
    """The hidden activation, named for what it is (`stem_relu`, `stage2_entry_gelu`)."""
    name = f"{prefix}_{spec.activation}{suffix}"
    return keras.layers.Activation(activations.get(spec.activation), name=name)(x)


def _stem(x, spec: ResNetSpec):
    """`cifar`: one 3x3 conv; `imagenet`: 7x7/2 conv + 3x3/2 max-pool; `deep`: 3x(3x3) + pool;
    `whiten`: 2x2 patch whitening + the activation; `none`: the input itself."""
    rank = spec.rank
    if spec.stem == "none":
        return x
    if spec.stem == "whiten":
        x = PatchWhitening(kernel_size=2, name="stem_whiten")(x)
        return _activation(x, spec, "stem")
    if spec.stem == "cifar":
        x = _conv_stem(
            x, spec.stem_filters, rank=rank, use_bias=spec.stem_bias, conv_init=spec.conv_init
        )
        return x if spec.preact else _norm_activation(x, spec)
    if spec.stem == "deep":
        half = spec.stem_filters // 2
        for i, (width, strides) in enumerate(((half, 2), (half, 1), (spec.stem_filters, 1)), 1):
            if strides > 1:
                x = _convs.layer("ZeroPadding", rank)(1, name=f"stem_pad{i}")(x)
            x = _convs.conv(
                width,
                3,
                rank=rank,
                strides=strides,
                use_bias=spec.stem_bias,
                kernel_initializer=conv_initializer(spec.conv_init),
                name=f"stem_conv{i}",
            )(x)
            if i < 3 or not spec.preact:
                x = _norm_activation(x, spec, suffix=str(i))
    else:
        x = _convs.layer("ZeroPadding", rank)(3, name="stem_pad")(x)
        x = _convs.layer("Conv", rank)(
            spec.stem_filters,
            7,
            strides=2,
            use_bias=spec.stem_bias,
            kernel_initializer=conv_initializer(spec.conv_init),
            name="stem_conv",
        )(x)
        if not spec.preact:
            x = _norm_activation(x, spec)
    x = _convs.layer("ZeroPadding", rank)(1, name="pool_pad")(x)
    return _convs.layer("MaxPooling", rank)(3, strides=2, name="stem_pool")(x)


def _residual_stages(x, spec: ResNetSpec):
    """Stack the stages; drop-path grows linearly with depth (Huang et al., 2016)."""
    block_layer, shared = BLOCK_LAYERS[spec.block], spec.block_kwargs()
    shared["kernel_initializer"] = conv_initializer(spec.conv_init)
    total, index = sum(spec.depths), 0
    dilations = spec.dilations or (1,) * len(spec.depths)
    for s, (count, filters, stage_strides, dilation) in enumerate(
        zip(spec.depths, spec.filters, spec.strides, dilations, strict=True), 1
    ):
        strided_block = 1 if spec.stride_at == "first" else count
        if spec.downsample == "pool":
            x, strided_block = _pool_entry(x, spec, s, filters, stage_strides), None
        for b in range(1, count + 1):
            strides = stage_strides if b == strided_block else 1
            shortcut = spec.shortcut
            if spec.stride_at == "last" and strides > 1 and shortcut == "B":
                shortcut = "A"  # keras.applications' ResNetV2 subsamples the identity
            x = block_layer(
                filters,
                strides,
                shortcut=shortcut,
                dilation_rate=dilation,
                drop_path_rate=spec.drop_path_rate * index / max(total - 1, 1),
                name=f"stage{s}_block{b}",
                **shared,
            )(x)
            index += 1
    return x


def _pool_entry(x, spec: ResNetSpec, stage: int, filters: int, strides: int):
    """Conv to the stage's channels, max-pool by its stride, norm, activation (ResNet-9's)."""
    channels = filters * (spec.expansion if spec.block == "bottleneck" else 1)
    x = _convs.conv(
        channels,
        3,
        rank=spec.rank,
        kernel_initializer=conv_initializer(spec.conv_init),
        name=f"stage{stage}_entry_conv",
    )(x)
    if strides > 1:
        x = _convs.layer("MaxPooling", spec.rank)(strides, name=f"stage{stage}_pool")(x)
    x = _convs.batch_norm(spec.norm, name=f"stage{stage}_entry_bn")(x)
    return _activation(x, spec, f"stage{stage}_entry")


def _dense_stages(x, spec: DenseNetSpec):
    last = len(spec.depths)
    for s, units in enumerate(spec.depths, 1):
        x = DenseBlock(
            units,
            spec.growth_rate,
            bottleneck=spec.bottleneck,
            dropout_rate=spec.dropout_rate,
            name=f"stage{s}_dense",
            **spec.block_kwargs(),
        )(x)
        if s < last:
            x = Transition(spec.compression, name=f"stage{s}_transition", **spec.block_kwargs())(x)
    return x


def _head(x, spec: Spec):
    if spec.post_norm:
        x = _convs.batch_norm(spec.norm, name="post_bn")(x)
        x = _activation(x, spec, "post")
    if spec.pooling == "max":
        x = _convs.layer("GlobalMaxPooling", spec.rank)(name="max_pool")(x)
    elif spec.include_top or spec.pooling == "avg":
        x = _convs.layer("GlobalAveragePooling", spec.rank)(name="avg_pool")(x)
    if not spec.include_top:
        return x
    activation, scale = spec.classifier_activation, spec.logit_scale
    x = keras.layers.Dense(
        spec.num_classes,
        activation=activation if scale == 1 else None,
        dtype="float32",
        name="predictions" if scale == 1 else "logits",
    )(x)
    if scale != 1:
        x = keras.layers.Rescaling(scale, dtype="float32", name="logit_scale")(x)
        x = keras.layers.Activation(activation, dtype="float32", name="predictions")(x)
    return x
