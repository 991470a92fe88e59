"""Stochastic depth (drop-path) for residual branches."""

from __future__ import annotations

import keras
from keras import ops

from keras_residual import _checks


@keras.saving.register_keras_serializable(package="keras_residual")
class DropPath(keras.layers.Layer):
    """Drops a whole residual branch per sample while training (stochastic depth).

    Surviving samples are scaled by `1 / (1 - rate)`, so inference is the identity.

    Args:
        rate: the probability of dropping a sample's branch, in [0, 1).
        seed: seed of the layer's random generator.

    Example:
    >>> import numpy as np
    >>> layer = DropPath(0.2)
    >>> x = np.ones((4, 8, 8, 16), "float32")
    >>> bool(np.array_equal(layer(x, training=False), x))
    True
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _checks.rate("rate", rate)
        if seed is not None:
            _checks.non_negative_int("seed", seed)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self.input_spec = keras.InputSpec(min_ndim=2)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=inputs.dtype)
        mask = ops.cast(noise < keep, inputs.dtype)
        return inputs * mask / ops.cast(keep, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
