"""DenseNet-BC blocks (Huang et al., 2017): concatenation as the shortcut."""

from __future__ import annotations

import keras
from keras import ops

from keras_residual import _checks, _convs, activations
from keras_residual.spec import Norm


class _DenseBase(keras.layers.Layer):
    """Norm/activation/initializer arguments shared by `DenseBlock` and `Transition`."""

    def __init__(
        self,
        activation: str = "relu",
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-3,
        bn_scale: bool = True,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.activation = activation
        self._act = activations.get(activation)
        self.bn_momentum = _checks.rate("bn_momentum", bn_momentum)
        self.bn_epsilon = _checks.positive("bn_epsilon", bn_epsilon)
        self.bn_scale = _checks.flag("bn_scale", bn_scale)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.input_spec = keras.InputSpec(ndim=4)

    def _norm(self, name, shape):
        norm = _convs.batch_norm(
            Norm(self.bn_momentum, self.bn_epsilon, self.bn_scale),
            name=f"{self.name}_{name}",
            dtype=self.dtype_policy,
        )
        norm.build(shape)
        return norm

    def _conv(self, filters, kernel_size, name, shape):
        conv = _convs.conv(
            filters,
            kernel_size,
            kernel_initializer=self.kernel_initializer,
            name=f"{self.name}_{name}",
            dtype=self.dtype_policy,
        )
        conv.build(shape)
        return conv

    def get_config(self):
        return {
            **super().get_config(),
            "activation": self.activation,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "bn_scale": self.bn_scale,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_residual")
class DenseBlock(_DenseBase):
    """`num_layers` BN-ReLU-Conv units, each seeing the concatenation of all before it.

    Output channels: `input + num_layers * growth_rate`.

    Args:
        num_layers: units in the block.
        growth_rate: channels each unit adds.
        bottleneck: each unit first reduces to `4 * growth_rate` channels with a 1x1
            convolution (DenseNet-B).
        dropout_rate: dropout after each convolution.
        activation, bn_momentum, bn_epsilon, bn_scale, kernel_initializer: as in
            `ResidualBlock`.

    Example:
    >>> import numpy as np
    >>> tuple(DenseBlock(3, growth_rate=12)(np.ones((2, 8, 8, 24), "float32")).shape)
    (2, 8, 8, 60)
    """

    def __init__(
        self,
        num_layers: int,
        growth_rate: int = 12,
        bottleneck: bool = True,
        dropout_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.growth_rate = _checks.positive_int("growth_rate", growth_rate)
        self.bottleneck = _checks.flag("bottleneck", bottleneck)
        self.dropout_rate = _checks.rate("dropout_rate", dropout_rate)

    def build(self, input_shape):
        batch, height, width, channels = input_shape
        self.units = []
        for i in range(self.num_layers):
            shape = (batch, height, width, channels + i * self.growth_rate)
            unit = []
            if self.bottleneck:
                unit += [self._norm(f"unit{i + 1}_bn1", shape)]
                unit += [self._conv(4 * self.growth_rate, 1, f"unit{i + 1}_conv1", shape)]
                shape = (batch, height, width, 4 * self.growth_rate)
            unit += [self._norm(f"unit{i + 1}_bn2", shape)]
            unit += [self._conv(self.growth_rate, 3, f"unit{i + 1}_conv2", shape)]
            self.units.append(unit)
        self.dropout = None
        if self.dropout_rate:
            self.dropout = keras.layers.Dropout(self.dropout_rate, name=f"{self.name}_dropout")

    def call(self, inputs, training=None):
        features = inputs
        for unit in self.units:
            y = features
            for norm, conv in zip(unit[::2], unit[1::2], strict=True):
                y = conv(self._act(norm(y, training=training)))
                if self.dropout is not None:
                    y = self.dropout(y, training=training)
            features = ops.concatenate([features, y], axis=-1)
        return features

    def compute_output_shape(self, input_shape):
        *rest, channels = input_shape
        return (*rest, channels + self.num_layers * self.growth_rate)

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "growth_rate": self.growth_rate,
            "bottleneck": self.bottleneck,
            "dropout_rate": self.dropout_rate,
        }


@keras.saving.register_keras_serializable(package="keras_residual")
class Transition(_DenseBase):
    """BN-ReLU-1x1 conv keeping `floor(compression * channels)`, then 2x2 average pool.

    Args:
        compression: the fraction of channels kept, in (0, 1] (DenseNet-C).
        activation, bn_momentum, bn_epsilon, bn_scale, kernel_initializer: as in
            `ResidualBlock`.

    Example:
    >>> import numpy as np
    >>> tuple(Transition(0.5)(np.ones((2, 8, 8, 60), "float32")).shape)
    (2, 4, 4, 30)
    """

    def __init__(self, compression: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.compression = _checks.rate("compression", compression, allow_one=True)
        if self.compression == 0.0:
            raise ValueError("`compression` must be in (0, 1], got 0.")

    def _filters(self, channels):
        return max(1, int(channels * self.compression))

    def build(self, input_shape):
        self.norm = self._norm("bn", input_shape)
        self.conv = self._conv(self._filters(input_shape[-1]), 1, "conv", input_shape)
        self.pool = keras.layers.AveragePooling2D(
            2, name=f"{self.name}_pool", dtype=self.dtype_policy
        )

    def call(self, inputs, training=None):
        return self.pool(self.conv(self._act(self.norm(inputs, training=training))))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        size = [None if d is None else d // 2 for d in (height, width)]
        return (batch, *size, self._filters(channels))

    def get_config(self):
        return {**super().get_config(), "compression": self.compression}
