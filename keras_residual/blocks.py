"""Residual blocks: basic and bottleneck, post- or pre-activation, grouped, SE, drop-path."""

from __future__ import annotations

import keras

from keras_residual import _checks, _convs
from keras_residual.drop_path import DropPath
from keras_residual.shortcuts import GatedShortcut, IdentityShortcut, ProjectionShortcut
from keras_residual.squeeze_excite import SqueezeExcite

SHORTCUT_KINDS = ("auto", "identity", "pad", "projection", "gated", "none")
BIAS_MODES = (False, True, "auto")


class ResidualBlock(keras.layers.Layer):
    """Shared machinery of `BasicBlock` and `BottleneckBlock`.

    A subclass only says which convolutions its residual branch holds
    (`_branch_specs`); ordering, normalisation, SE, drop-path and the shortcut live here.

    Shortcut kinds: `"auto"` (identity when shapes match, else projection: option B),
    `"identity"`, `"pad"` (zero-pad identity: option A), `"projection"` (always 1x1
    conv: option C), `"gated"` (Highway gate) and `"none"` (the plain, shortcut-free twin).
    `dropout_rate` drops activations between the branch convolutions (Wide ResNet).
    `use_bias=True` gives every convolution a bias, `"auto"` only those not followed by
    batch norm.
    """

    expansion = 1

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        preact: bool = False,
        groups: int = 1,
        base_width: int = 64,
        se_ratio: float = 0.0,
        drop_path_rate: float = 0.0,
        dropout_rate: float = 0.0,
        zero_init_residual: bool = False,
        shortcut: str = "auto",
        avg_down: bool = False,
        activation: str = "relu",
        use_bias: bool | str = False,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-3,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _checks.positive_int("filters", filters)
        self.strides = _checks.positive_int("strides", strides)
        self.preact = bool(preact)
        self.groups = _checks.positive_int("groups", groups)
        self.base_width = _checks.positive_int("base_width", base_width)
        self.se_ratio = _checks.rate("se_ratio", se_ratio, allow_one=True)
        self.drop_path_rate = _checks.rate("drop_path_rate", drop_path_rate)
        self.dropout_rate = _checks.rate("dropout_rate", dropout_rate)
        self.zero_init_residual = bool(zero_init_residual)
        self.shortcut = _checks.choice("shortcut", shortcut, SHORTCUT_KINDS)
        self.avg_down = bool(avg_down)
        self.activation = activation
        self._act = keras.activations.get(activation)
        self.use_bias = _checks.choice("use_bias", use_bias, BIAS_MODES)
        self.bn_momentum = _checks.rate("bn_momentum", bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.width = int(self.filters * self.base_width / 64) * self.groups
        if self.width < self.groups:
            raise ValueError(
                f"`base_width`={base_width} leaves no channels per group for "
                f"filters={filters}; raise `base_width` or `filters`."
            )
        for name, channels in self._grouped_channels():
            if channels % self.groups:
                raise ValueError(
                    f"`groups`={groups} must divide the {name} ({channels}); choose "
                    f"groups among the divisors of {channels}."
                )

    @property
    def output_filters(self) -> int:
        """Channels of the block's output: `filters * expansion`."""
        return self.filters * self.expansion

    def _grouped_channels(self):
        """(description, channels) pairs that `groups` must divide."""
        return [("branch width", self.width)]

    def _branch_specs(self):
        """(filters, kernel_size, strides, groups) of each branch convolution, in order."""
        raise NotImplementedError

    def _conv_bias(self, followed_by_bn: bool) -> bool:
        """`use_bias=True`: every conv; `"auto"`: only convs with no batch norm after them."""
        return self.use_bias is True or (self.use_bias == "auto" and not followed_by_bn)

    def _resolve_shortcut(self, channels: int) -> str:
        same = channels == self.output_filters and self.strides == 1
        kind = self.shortcut
        if kind == "auto":
            kind = "identity" if same else "projection"
        if kind == "identity" and not same:
            raise ValueError(
                f"shortcut='identity' cannot map {channels} channels at stride 1 to "
                f"{self.output_filters} channels at stride {self.strides}; use "
                "shortcut='pad' (parameter-free, option A) or shortcut='projection'."
            )
        if kind == "pad" and same:
            kind = "identity"
        return kind

    def build(self, input_shape):
        channels = input_shape[-1]
        specs = self._branch_specs()
        if specs[0][3] > 1 and channels % self.groups:
            raise ValueError(f"`groups`={self.groups} must divide the input channels ({channels}).")
        dtype, prefix, last = self.dtype_policy, self.name, len(specs) - 1
        bn = {"momentum": self.bn_momentum, "epsilon": self.bn_epsilon, "dtype": dtype}

        self.preact_bn = None
        if self.preact:
            self.preact_bn = _convs.batch_norm(name=f"{prefix}_preact_bn", **bn)
            self.preact_bn.build(input_shape)

        self.convs, self.norms = [], []
        shape = input_shape
        for i, (filters, kernel_size, strides, groups) in enumerate(specs):
            followed_by_bn = not (self.preact and i == last)
            zero_kernel = self.zero_init_residual and self.preact and i == last
            conv = _convs.conv2d(
                filters,
                kernel_size,
                strides=strides,
                groups=groups,
                use_bias=self._conv_bias(followed_by_bn),
                kernel_initializer="zeros" if zero_kernel else self.kernel_initializer,
                name=f"{prefix}_conv{i + 1}",
                dtype=dtype,
            )
            shape = _convs.padded_shape(shape, conv)
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            self.convs.append(conv)
            if followed_by_bn:
                zero_gamma = self.zero_init_residual and i == last
                norm = _convs.batch_norm(name=f"{prefix}_bn{i + 1}", zero_gamma=zero_gamma, **bn)
                norm.build(shape)
                self.norms.append(norm)

        self.se = None
        if self.se_ratio:
            self.se = SqueezeExcite(self.se_ratio, name=f"{prefix}_se", dtype=dtype)
            self.se.build(shape)
        self.dropout = None
        if self.dropout_rate:
            self.dropout = keras.layers.Dropout(self.dropout_rate, name=f"{prefix}_dropout")
        self.drop_path = None
        if self.drop_path_rate:
            self.drop_path = DropPath(self.drop_path_rate, name=f"{prefix}_drop_path", dtype=dtype)

        self._shortcut_kind = self._resolve_shortcut(channels)
        reshapes = shape[-1] != channels or self.strides != 1
        self.shortcut_layer, self.gate = None, None
        if self._shortcut_kind == "pad":
            self.shortcut_layer = IdentityShortcut(
                self.output_filters,
                self.strides,
                mode="pad",
                name=f"{prefix}_shortcut",
                dtype=dtype,
            )
        elif self._shortcut_kind == "projection" or (self._shortcut_kind == "gated" and reshapes):
            self.shortcut_layer = ProjectionShortcut(
                self.output_filters,
                self.strides,
                avg_down=self.avg_down,
                use_bn=not self.preact,
                use_bias=self._conv_bias(followed_by_bn=not self.preact),
                bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon,
                kernel_initializer=self.kernel_initializer,
                name=f"{prefix}_shortcut",
                dtype=dtype,
            )
        if self.shortcut_layer is not None:
            self.shortcut_layer.build(input_shape)
        if self._shortcut_kind == "gated":
            self.gate = GatedShortcut(name=f"{prefix}_gate", dtype=dtype)
            self.gate.build([shape, shape])

    def call(self, inputs, training=None):
        x = inputs
        if self.preact_bn is not None:
            x = self._act(self.preact_bn(inputs, training=training))
        y = x
        for i, conv in enumerate(self.convs):
            y = conv(_convs.symmetric_pad(y, conv))
            if i < len(self.norms):
                y = self.norms[i](y, training=training)
            if i < len(self.convs) - 1:
                y = self._act(y)
                if self.dropout is not None:  # between convolutions, as in Wide ResNets
                    y = self.dropout(y, training=training)
        if self.se is not None:
            y = self.se(y)
        if self.drop_path is not None:
            y = self.drop_path(y, training=training)

        if self._shortcut_kind != "none":
            projected = isinstance(self.shortcut_layer, ProjectionShortcut)
            carry = x if projected else inputs  # pre-activation projects the normed input
            if self.shortcut_layer is not None:
                carry = self.shortcut_layer(carry, training=training)
            y = self.gate([carry, y]) if self.gate is not None else carry + y
        return y if self.preact else self._act(y)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        size = [None if d is None else -(-d // self.strides) for d in (height, width)]
        return (batch, *size, self.output_filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "preact": self.preact,
            "groups": self.groups,
            "base_width": self.base_width,
            "se_ratio": self.se_ratio,
            "drop_path_rate": self.drop_path_rate,
            "dropout_rate": self.dropout_rate,
            "zero_init_residual": self.zero_init_residual,
            "shortcut": self.shortcut,
            "avg_down": self.avg_down,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_residual")
class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions plus a shortcut (He et al., 2016); `output_filters == filters`.

    Example:
    >>> import numpy as np
    >>> tuple(BasicBlock(32, strides=2, shortcut="pad")(np.ones((2, 8, 8, 16), "float32")).shape)
    (2, 4, 4, 32)
    """

    def _grouped_channels(self):
        return [("branch width", self.width), ("filters", self.filters)]

    def _branch_specs(self):
        return [
            (self.width, 3, self.strides, self.groups),
            (self.filters, 3, 1, self.groups),
        ]


@keras.saving.register_keras_serializable(package="keras_residual")
class BottleneckBlock(ResidualBlock):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand by `expansion`, plus a shortcut.

    The stride sits on the 3x3 (torchvision "v1.5"); `stride_in_1x1=True` moves it to
    the first 1x1 as in the original paper and `keras.applications.ResNet50`.

    Example:
    >>> import numpy as np
    >>> tuple(BottleneckBlock(16)(np.ones((2, 8, 8, 64), "float32")).shape)
    (2, 8, 8, 64)
    """

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        expansion: int = 4,
        stride_in_1x1: bool = False,
        **kwargs,
    ):
        self.expansion = _checks.positive_int("expansion", expansion)
        self.stride_in_1x1 = bool(stride_in_1x1)
        super().__init__(filters, strides, **kwargs)

    def _branch_specs(self):
        first, middle = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
        return [
            (self.width, 1, first, 1),
            (self.width, 3, middle, self.groups),
            (self.output_filters, 1, 1, 1),
        ]

    def get_config(self):
        return {
            **super().get_config(),
            "expansion": self.expansion,
            "stride_in_1x1": self.stride_in_1x1,
        }
