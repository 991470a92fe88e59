"""Convolution, pooling and normalisation factories shared by the layers and builders.

Rank-generic: a layer's rank (1 for sequences `(batch, steps, channels)`, 2 for images,
3 for volumes) comes from its input, and these factories pick the Keras layer of that rank.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_residual.normalization import FusedBatchNormalization
from keras_residual.spec import Norm

RANKS = (1, 2, 3)


def rank_of(input_shape) -> int:
    """The spatial rank of a channels-last `input_shape` (batch included), or a ValueError.

    Example:
    >>> rank_of((None, 150, 1)), rank_of((None, 32, 32, 3))
    (1, 2)
    """
    rank = len(input_shape) - 2
    if rank not in RANKS:
        raise ValueError(
            "Expected channels-last inputs of rank 3 to 5: (batch, steps, channels), "
            f"(batch, height, width, channels) or (batch, depth, height, width, channels); "
            f"got shape {tuple(input_shape)}."
        )
    return rank


def rank_spec() -> keras.InputSpec:
    """The input spec of a rank-generic layer: sequences, images or volumes."""
    return keras.InputSpec(min_ndim=3, max_ndim=5)


def layer(kind: str, rank: int):
    """The Keras layer class `kind` ("Conv", "MaxPooling", "AveragePooling",
    "GlobalAveragePooling", "GlobalMaxPooling", "ZeroPadding") of `rank`.

    Example:
    >>> layer("MaxPooling", 1).__name__
    'MaxPooling1D'
    """
    return getattr(keras.layers, f"{kind}{rank}D")


def strided_size(size, strides: int):
    """A spatial size after a stride (None stays None)."""
    return None if size is None else -(-size // strides)


def subsample(x, strides: int, rank: int):
    """Every `strides`-th position of channels-last `x` along its `rank` spatial axes, the
    first kept: `x[:, ::strides, ::strides, :]` for images. On TensorFlow a pooling of
    one-wide windows takes exactly those positions in a sixth to a tenth of the time of the
    strided slice and its gradient (generic kernels there, oneDNN's pooling here;
    docs/performance.md); the other backends slice.

    Example:
    >>> import numpy as np
    >>> x = np.arange(2 * 5 * 5 * 3, dtype="float32").reshape(2, 5, 5, 3)
    >>> bool(np.array_equal(subsample(x, 2, 2), x[:, ::2, ::2, :]))
    True
    """
    if strides == 1:
        return x
    if keras.config.backend() == "tensorflow":
        return ops.average_pool(x, 1, strides, padding="valid", data_format="channels_last")
    every = slice(None, None, strides)
    return x[(slice(None), *[every] * rank, slice(None))]


def conv(
    filters: int,
    kernel_size: int,
    *,
    rank: int = 2,
    strides: int = 1,
    groups: int = 1,
    dilation_rate: int = 1,
    causal: bool = False,
    use_bias: bool = False,
    kernel_initializer="he_normal",
    name: str | None = None,
    dtype=None,
):
    """A convolution of `rank` that expects `symmetric_pad` in front of it when strided,
    with its own instance of `kernel_initializer` (`fresh_initializer`).

    Strided convolutions pad symmetrically (torchvision and keras.applications do),
    not TensorFlow's bottom-right-heavy "same" padding, so weights port across. A causal
    one (sequences) pads on the left only: its output at a step sees no later step.
    """
    padding = "valid" if strides > 1 and kernel_size > 1 else "same"
    padding = "causal" if causal else padding
    return layer("Conv", rank)(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        dilation_rate=dilation_rate,
        use_bias=use_bias,
        kernel_initializer=fresh_initializer(kernel_initializer),
        name=name,
        dtype=dtype,
    )


def fresh_initializer(initializer):
    """A new instance of `initializer` (an instance, name or config). Keras 3's unseeded
    initializer draws the same values on every call, so one instance shared by a block's
    convolutions would start same-shaped kernels identical; a seeded one stays seeded.

    Example:
    >>> shared = keras.initializers.HeNormal()
    >>> a, b = fresh_initializer(shared)((3, 3)), fresh_initializer(shared)((3, 3))
    >>> bool(ops.all(a == b))
    False
    """
    initializer = keras.initializers.get(initializer)
    return type(initializer).from_config(initializer.get_config())


def symmetric_pad(x, layer):
    """Pad `x` the way `layer` (a convolution made by `conv`) expects."""
    if layer.padding != "valid":
        return x
    p = (layer.kernel_size[0] - 1) // 2
    return ops.pad(x, [[0, 0]] + [[p, p]] * layer.rank + [[0, 0]])


def padded_shape(shape, layer):
    """The input shape `layer` (made by `conv`) sees after `symmetric_pad`."""
    if layer.padding != "valid":
        return tuple(shape)
    p = (layer.kernel_size[0] - 1) // 2
    sizes = (None if d is None else d + 2 * p for d in shape[1:-1])
    return (shape[0], *sizes, shape[-1])


def batch_norm(
    norm: Norm, *, zero_gamma: bool = False, name=None, dtype=None
) -> FusedBatchNormalization:
    """BatchNormalization over channels-last feature maps (fused kernel when training)."""
    return FusedBatchNormalization(
        momentum=norm.momentum,
        epsilon=norm.epsilon,
        scale=norm.scale,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
        dtype=dtype,
    )
