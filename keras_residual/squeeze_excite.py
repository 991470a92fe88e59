"""Squeeze-and-excitation channel attention (Hu et al., 2018)."""

from __future__ import annotations

import keras
from keras import ops

from keras_residual import _checks, _convs


@keras.saving.register_keras_serializable(package="keras_residual")
class SqueezeExcite(keras.layers.Layer):
    """Rescales channels by a gate computed from their global average.

    Args:
        ratio: the gate's hidden width as a fraction of the channels, in (0, 1]
            (1/16 in the paper).
        activation: the hidden layer's activation.

    Example:
    >>> import numpy as np
    >>> tuple(SqueezeExcite(ratio=0.25)(np.ones((2, 8, 8, 16), "float32")).shape)
    (2, 8, 8, 16)
    >>> tuple(SqueezeExcite(ratio=0.25)(np.ones((2, 8, 16), "float32")).shape)  # sequences
    (2, 8, 16)
    """

    def __init__(self, ratio: float = 0.0625, activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.ratio = _checks.rate("ratio", ratio, allow_one=True)
        if self.ratio == 0.0:
            raise ValueError("`ratio` must be in (0, 1], got 0.")
        self.activation = activation
        keras.activations.get(activation)  # fail early on an unknown name
        self.input_spec = _convs.rank_spec()

    def build(self, input_shape):
        self._axes = tuple(range(1, _convs.rank_of(input_shape) + 1))
        channels = input_shape[-1]
        reduced = max(1, int(channels * self.ratio))
        self.reduce = keras.layers.Dense(
            reduced, activation=self.activation, name="reduce", dtype=self.dtype_policy
        )
        self.expand = keras.layers.Dense(
            channels, activation="sigmoid", name="expand", dtype=self.dtype_policy
        )
        self.reduce.build((None, channels))
        self.expand.build((None, reduced))

    def call(self, inputs):
        squeezed = ops.mean(inputs, axis=self._axes, keepdims=True)
        return inputs * self.expand(self.reduce(squeezed))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "ratio": self.ratio,
            "activation": self.activation,
        }
