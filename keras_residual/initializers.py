"""Convolution kernel initializers, and the one a spec's `conv_init` names."""

from __future__ import annotations

import keras
from keras import ops

# PyTorch's default for convolutions (Kaiming-uniform with a=sqrt(5)): U(+-1/sqrt(fan_in)).
TORCH_CONV_DEFAULT = {"scale": 1 / 3, "mode": "fan_in", "distribution": "uniform"}


@keras.saving.register_keras_serializable(package="keras_residual")
class Dirac(keras.initializers.Initializer):
    """A 2-D convolution kernel whose first filters start as the identity (PyTorch's
    `nn.init.dirac_`, as airbench initialises its convolutions).

    Filter `i`, for `i < min(in_channels, filters)`, passes input channel `i` through: a
    1 at the kernel's centre, zeros elsewhere. The other filters are drawn from `base`,
    by default PyTorch's convolution default (uniform in +-1/sqrt(fan_in)).

    Args:
        base: a Keras initializer (or its name or config) for the filters that are not
            the identity.

    Example:
    >>> kernel = Dirac()((3, 3, 2, 4))
    >>> keras.ops.convert_to_numpy(kernel[1, 1, :, :2]).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """

    def __init__(self, base=None):
        if base is None:
            base = keras.initializers.VarianceScaling(**TORCH_CONV_DEFAULT)
        self.base = keras.initializers.get(base)

    def __call__(self, shape, dtype=None):
        if len(shape) != 4:
            raise ValueError(
                "`Dirac` initialises 2-D convolution kernels of shape (height, width, "
                f"in_channels, filters), got shape {tuple(shape)}."
            )
        height, width, channels, filters = shape
        identity = min(channels, filters)
        dtype = keras.backend.standardize_dtype(dtype)
        centre = ops.reshape(
            ops.one_hot(height // 2 * width + width // 2, height * width, dtype=dtype),
            (height, width, 1, 1),
        )
        passed = centre * ops.eye(channels, identity, dtype=dtype)
        drawn = self.base((height, width, channels, filters - identity), dtype=dtype)
        return ops.concatenate([passed, drawn], axis=-1)

    def get_config(self):
        return {"base": keras.initializers.serialize(self.base)}


def conv_initializer(conv_init: str):
    """The kernel initializer a spec's `conv_init` names (`spec.CONV_INITS`).

    Example:
    >>> type(conv_initializer("dirac")).__name__, conv_initializer("he_normal")
    ('Dirac', 'he_normal')
    """
    return Dirac() if conv_init == "dirac" else conv_init
