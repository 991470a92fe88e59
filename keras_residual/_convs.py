"""Convolution and normalisation factories shared by the layers and builders."""

from __future__ import annotations

import keras
from keras import ops

from keras_residual.normalization import FusedBatchNormalization
from keras_residual.spec import Norm


def conv2d(
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    groups: int = 1,
    use_bias: bool = False,
    kernel_initializer="he_normal",
    name: str | None = None,
    dtype=None,
) -> keras.layers.Conv2D:
    """A Conv2D that expects `symmetric_pad` in front of it when strided, with its own
    instance of `kernel_initializer` (`fresh_initializer`).

    Strided convolutions pad symmetrically (torchvision and keras.applications do),
    not TensorFlow's bottom-right-heavy "same" padding, so weights port across.
    """
    padding = "valid" if strides > 1 and kernel_size > 1 else "same"
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
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


def symmetric_pad(x, conv: keras.layers.Conv2D):
    """Pad `x` the way `conv` (made by `conv2d`) expects."""
    if conv.padding != "valid":
        return x
    p = (conv.kernel_size[0] - 1) // 2
    return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])


def padded_shape(shape, conv: keras.layers.Conv2D):
    """The input shape `conv` sees after `symmetric_pad`."""
    if conv.padding != "valid":
        return tuple(shape)
    p = (conv.kernel_size[0] - 1) // 2
    height, width = (None if d is None else d + 2 * p for d in shape[1:3])
    return (shape[0], height, width, shape[3])


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
