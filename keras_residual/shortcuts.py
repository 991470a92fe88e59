"""Shortcut connections: identity, zero-pad identity, projection and Highway gate.

Rank-generic: sequences `(batch, steps, channels)`, images and volumes alike."""

from __future__ import annotations

import keras
from keras import ops

from keras_residual import _checks, _convs
from keras_residual.spec import Norm

IDENTITY_MODES = ("identity", "pad")


@keras.saving.register_keras_serializable(package="keras_residual")
class IdentityShortcut(keras.layers.Layer):
    """Parameter-free shortcut.

    Args:
        filters: output channels (None: the input's).
        strides: subsampling factor.
        mode: `"identity"` passes the input through unchanged; `"pad"` is He et al.'s
            option A: subsample by `strides` and zero-pad the channels up to `filters`.
        norm: a batch norm on the shortcut (Wang et al. 2017's last block for time series).
        bn_momentum, bn_epsilon, bn_scale: its settings.

    Example:
    >>> import numpy as np
    >>> x = np.ones((2, 8, 8, 16), "float32")
    >>> tuple(IdentityShortcut(filters=32, strides=2, mode="pad")(x).shape)
    (2, 4, 4, 32)
    >>> tuple(IdentityShortcut(filters=32, strides=2, mode="pad")(x[:, 0]).shape)  # sequences
    (2, 4, 32)
    """

    def __init__(
        self,
        filters: int | None = None,
        strides: int = 1,
        mode="identity",
        norm: bool = False,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-3,
        bn_scale: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = None if filters is None else _checks.positive_int("filters", filters)
        self.strides = _checks.positive_int("strides", strides)
        self.mode = _checks.choice("mode", mode, IDENTITY_MODES)
        self.norm = _checks.flag("norm", norm)
        self.bn_momentum = _checks.rate("bn_momentum", bn_momentum)
        self.bn_epsilon = _checks.positive("bn_epsilon", bn_epsilon)
        self.bn_scale = _checks.flag("bn_scale", bn_scale)
        self.input_spec = _convs.rank_spec()

    def build(self, input_shape):
        self._rank = _convs.rank_of(input_shape)
        channels = input_shape[-1]
        filters = channels if self.filters is None else self.filters
        if self.mode == "identity" and (filters != channels or self.strides != 1):
            raise ValueError(
                f"An identity shortcut cannot map {channels} channels at stride 1 to "
                f"{filters} channels at stride {self.strides}: use mode='pad' "
                "(parameter-free, option A) or a ProjectionShortcut (option B)."
            )
        if filters < channels:
            raise ValueError(
                f"mode='pad' can only add channels, but `filters`={filters} is below "
                f"the input's {channels}: use a ProjectionShortcut."
            )
        self._extra_channels = filters - channels
        self.bn = None
        if self.norm:
            norm = Norm(self.bn_momentum, self.bn_epsilon, self.bn_scale)
            self.bn = _convs.batch_norm(norm, name="bn", dtype=self.dtype_policy)
            self.bn.build(self.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        x = _convs.subsample(inputs, self.strides, self._rank)
        if self._extra_channels:
            x = ops.pad(x, [[0, 0]] * (self._rank + 1) + [[0, self._extra_channels]])
        return self.bn(x, training=training) if self.bn else x

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        filters = channels if self.filters is None else self.filters
        sizes = (_convs.strided_size(d, self.strides) for d in input_shape[1:-1])
        return (input_shape[0], *sizes, filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "mode": self.mode,
            "norm": self.norm,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "bn_scale": self.bn_scale,
        }


@keras.saving.register_keras_serializable(package="keras_residual")
class ProjectionShortcut(keras.layers.Layer):
    """1x1 convolution + batch norm that matches the residual's shape (options B/C).

    Args:
        filters: output channels.
        strides: stride of the 1x1 convolution (or of the pooling with `avg_down`).
        avg_down: the ResNet-D variant: average-pool by `strides`, then a stride-1 1x1.
        use_bn: follow the convolution with batch norm (False in pre-activation blocks).
        use_bias: give the convolution a bias.
        bn_momentum, bn_epsilon, bn_scale: batch-norm settings.
        kernel_initializer: of the convolution.

    Example:
    >>> import numpy as np
    >>> tuple(ProjectionShortcut(64, strides=2)(np.ones((2, 8, 8, 16), "float32")).shape)
    (2, 4, 4, 64)
    """

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        avg_down: bool = False,
        use_bn: bool = True,
        use_bias: bool = False,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-3,
        bn_scale: bool = True,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _checks.positive_int("filters", filters)
        self.strides = _checks.positive_int("strides", strides)
        self.avg_down = _checks.flag("avg_down", avg_down)
        self.use_bn = _checks.flag("use_bn", use_bn)
        self.use_bias = _checks.flag("use_bias", use_bias)
        self.bn_momentum = _checks.rate("bn_momentum", bn_momentum)
        self.bn_epsilon = _checks.positive("bn_epsilon", bn_epsilon)
        self.bn_scale = _checks.flag("bn_scale", bn_scale)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.input_spec = _convs.rank_spec()

    def build(self, input_shape):
        dtype, rank = self.dtype_policy, _convs.rank_of(input_shape)
        shape = input_shape
        self.pool = None
        if self.avg_down and self.strides > 1:
            self.pool = _convs.layer("AveragePooling", rank)(
                self.strides, self.strides, padding="same", name="pool", dtype=dtype
            )
            shape = self.pool.compute_output_shape(shape)
        self.conv = _convs.conv(
            self.filters,
            1,
            rank=rank,
            strides=1 if self.pool else self.strides,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            name="conv",
            dtype=dtype,
        )
        self.conv.build(shape)
        self.bn = None
        if self.use_bn:
            norm = Norm(self.bn_momentum, self.bn_epsilon, self.bn_scale)
            self.bn = _convs.batch_norm(norm, name="bn", dtype=dtype)
            self.bn.build(self.conv.compute_output_shape(shape))

    def call(self, inputs, training=None):
        x = self.pool(inputs) if self.pool else inputs
        x = self.conv(x)
        return self.bn(x, training=training) if self.bn else x

    def compute_output_shape(self, input_shape):
        sizes = (_convs.strided_size(d, self.strides) for d in input_shape[1:-1])
        return (input_shape[0], *sizes, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "avg_down": self.avg_down,
            "use_bn": self.use_bn,
            "use_bias": self.use_bias,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "bn_scale": self.bn_scale,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_residual")
class GatedShortcut(keras.layers.Layer):
    """Highway carry gate: `T(x) * F(x) + (1 - T(x)) * x` with `T = sigmoid(1x1 conv)`.

    Called on `[x, residual]` of equal shapes.

    Args:
        gate_bias: the gate's initial bias, a finite number; negative, so the layer
            starts close to the identity on `x`.

    Example:
    >>> import numpy as np
    >>> x, fx = np.ones((2, 8, 8, 16), "float32"), np.zeros((2, 8, 8, 16), "float32")
    >>> tuple(GatedShortcut()([x, fx]).shape)
    (2, 8, 8, 16)
    """

    def __init__(self, gate_bias: float = -2.0, **kwargs):
        super().__init__(**kwargs)
        self.gate_bias = _checks.finite("gate_bias", gate_bias)
        self.input_spec = [_convs.rank_spec(), _convs.rank_spec()]

    def __call__(self, inputs, *args, **kwargs):
        if not isinstance(inputs, list | tuple) or len(inputs) != 2:
            got = f"{len(inputs)} tensors" if isinstance(inputs, list | tuple) else "one tensor"
            raise ValueError(
                "GatedShortcut is called on [x, residual], two tensors of equal shapes "
                f"(the block's input and its branch's output); got {got}."
            )
        return super().__call__(inputs, *args, **kwargs)

    def build(self, input_shape):
        carry_shape, residual_shape = input_shape
        if tuple(carry_shape[1:]) != tuple(residual_shape[1:]):
            raise ValueError(
                "GatedShortcut needs [x, residual] of equal shapes, got "
                f"{tuple(carry_shape)} and {tuple(residual_shape)}: project x first."
            )
        self.gate = _convs.layer("Conv", _convs.rank_of(carry_shape))(
            carry_shape[-1],
            1,
            activation="sigmoid",
            bias_initializer=keras.initializers.Constant(self.gate_bias),
            name="gate",
            dtype=self.dtype_policy,
        )
        self.gate.build(carry_shape)

    def call(self, inputs):
        carry, residual = inputs
        transform = self.gate(carry)
        return transform * residual + (1.0 - transform) * carry

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "gate_bias": self.gate_bias}
