"""Residual blocks: basic and bottleneck, post- or pre-activation, grouped, SE, drop-path.

Rank-generic: the same block runs on sequences `(batch, steps, channels)`, images and
volumes; its convolutions take the rank of its input."""

from __future__ import annotations

from typing import NamedTuple

import keras

from keras_residual import _checks, _convs, activations
from keras_residual.drop_path import DropPath
from keras_residual.shortcuts import GatedShortcut, IdentityShortcut, ProjectionShortcut
from keras_residual.spec import BIAS_MODES, Norm, check_shortcut
from keras_residual.squeeze_excite import SqueezeExcite


class ConvStep(NamedTuple):
    """One convolution of a residual branch."""

    filters: int
    kernel_size: int
    strides: int = 1
    groups: int = 1
    dilation_rate: int = 1


class ResidualBlock(keras.layers.Layer):
    """What `BasicBlock` and `BottleneckBlock` share: ordering, norms, SE, drop-path, shortcut.

    A subclass only says which convolutions its branch holds (`branch_steps`). Post-
    activation: `relu(shortcut(x) + bn(conv(...relu(bn(conv(x))))))`; pre-activation
    (`preact=True`): `shortcut(x) + conv(relu(bn(...conv(relu(bn(x))))))`.

    Args:
        filters: filters of the branch (its output is `filters * expansion` channels).
        strides: stride of the block (on its first 3x3, or its first 1x1 if asked).
        kernel_size: the kernel size of the block's spatial convolutions (3); a basic
            block also takes one size per convolution, e.g. `(8, 5, 3)` for the three
            convolutions of Wang et al.'s time-series ResNet.
        dilation_rate: the dilation of the spatial convolutions (TCNs double it per
            block); needs `strides=1`.
        causal: sequences only: the convolutions pad on the left, so that a step's output
            sees no later step (a TCN's causal convolutions).
        preact: pre-activation ("v2") ordering.
        groups: grouped 3x3 convolutions (ResNeXt cardinality).
        base_width: width per group at 64 filters (ResNeXt's d); the branch's inner
            channels (`bottleneck_width`) are `int(filters * base_width / 64) * groups`.
        se_ratio: squeeze-and-excitation on the branch output (0: none).
        drop_path_rate: drops the whole branch per sample while training.
        dropout_rate: dropout between the branch's convolutions (Wide ResNet).
        zero_init_residual: the branch's last norm (or, pre-activation, conv) starts at 0,
            so the block starts as its shortcut.
        shortcut: `"A"` (identity; where the shape changes, subsample and zero-pad: no
            parameters), `"B"` (identity; a 1x1 projection where the shape changes), `"C"`
            (a projection always), `"gated"` (Highway carry gate) or `"none"` (no shortcut).
        identity_norm: an identity shortcut passes through a batch norm (Wang et al. 2017).
        avg_down: a projection average-pools, then applies a stride-1 1x1 conv (ResNet-D).
        activation: the branch's activation.
        use_bias: conv biases: `False`, `True`, or `"auto"` (only where no norm follows).
        bn_momentum, bn_epsilon, bn_scale: batch-norm settings (a `Norm` spelled out).
        kernel_initializer: of the convolutions.
    """

    expansion = 1

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        kernel_size: int | tuple[int, ...] = 3,
        dilation_rate: int = 1,
        causal: bool = False,
        preact: bool = False,
        groups: int = 1,
        base_width: int = 64,
        se_ratio: float = 0.0,
        drop_path_rate: float = 0.0,
        dropout_rate: float = 0.0,
        zero_init_residual: bool = False,
        shortcut: str = "B",
        identity_norm: bool = False,
        avg_down: bool = False,
        activation: str = "relu",
        use_bias: bool | str = False,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-3,
        bn_scale: bool = True,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _checks.positive_int("filters", filters)
        self.strides = _checks.positive_int("strides", strides)
        self.kernel_size = _checks.kernel_sizes("kernel_size", kernel_size)
        self.dilation_rate = _checks.positive_int("dilation_rate", dilation_rate)
        self.causal = _checks.flag("causal", causal)
        if self.dilation_rate > 1 and self.strides > 1:
            raise ValueError(
                f"A block cannot both dilate (`dilation_rate`={dilation_rate}) and stride "
                f"(`strides`={strides}): Keras's convolutions take one of them."
            )
        self.preact = _checks.flag("preact", preact)
        self.groups = _checks.positive_int("groups", groups)
        self.base_width = _checks.positive_int("base_width", base_width)
        self.se_ratio = _checks.rate("se_ratio", se_ratio, allow_one=True)
        self.drop_path_rate = _checks.rate("drop_path_rate", drop_path_rate)
        self.dropout_rate = _checks.rate("dropout_rate", dropout_rate)
        self.zero_init_residual = _checks.flag("zero_init_residual", zero_init_residual)
        self.shortcut = check_shortcut(shortcut)
        self.identity_norm = _checks.flag("identity_norm", identity_norm)
        self.avg_down = _checks.flag("avg_down", avg_down)
        self.activation = activation
        self._act = activations.get(activation)
        self.use_bias = _checks.choice("use_bias", use_bias, BIAS_MODES)
        self.bn_momentum = _checks.rate("bn_momentum", bn_momentum)
        self.bn_epsilon = _checks.positive("bn_epsilon", bn_epsilon)
        self.bn_scale = _checks.flag("bn_scale", bn_scale)
        if self.zero_init_residual and not self.preact and not self.bn_scale:
            raise ValueError(
                "`zero_init_residual` starts the block's last batch-norm scale at 0, which "
                "`bn_scale=False` leaves out: set one of them differently."
            )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bottleneck_width = int(self.filters * self.base_width / 64) * self.groups
        if self.bottleneck_width < self.groups:
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
        self.input_spec = _convs.rank_spec()

    @property
    def output_filters(self) -> int:
        """Channels of the block's output: `filters * expansion`."""
        return self.filters * self.expansion

    def _grouped_channels(self) -> list[tuple[str, int]]:
        """(description, channels) pairs that `groups` must divide."""
        return [("bottleneck width", self.bottleneck_width)]

    def branch_steps(self) -> list[ConvStep]:
        """The branch's convolutions, in order."""
        raise NotImplementedError

    def branch_layers(self) -> dict[str, keras.layers.Layer]:
        """The built branch's layers by their name inside the block, in call order:
        `preact_bn`, `conv1`, `bn1`, `conv2`, ..., `se` (those the block has).

        Example:
        >>> import numpy as np
        >>> block = BasicBlock(8, name="b")
        >>> _ = block(np.ones((1, 4, 4, 8), "float32"))
        >>> list(block.branch_layers())
        ['conv1', 'bn1', 'conv2', 'bn2']
        """
        ordered = [self.preact_bn] + [
            layer for i, conv in enumerate(self.convs) for layer in (conv, self._norm_after(i))
        ]
        ordered.append(self.se)
        prefix = f"{self.name}_"
        return {layer.name.removeprefix(prefix): layer for layer in ordered if layer is not None}

    def _norm_after(self, index: int):
        return self.norms[index] if index < len(self.norms) else None

    def _conv_bias(self, followed_by_bn: bool) -> bool:
        """`use_bias=True`: every conv; `"auto"`: only convs with no batch norm after them."""
        return self.use_bias is True or (self.use_bias == "auto" and not followed_by_bn)

    def _norm(self, name: str, shape, *, zero_gamma: bool = False):
        norm = _convs.batch_norm(
            Norm(self.bn_momentum, self.bn_epsilon, self.bn_scale),
            zero_gamma=zero_gamma,
            name=f"{self.name}_{name}",
            dtype=self.dtype_policy,
        )
        norm.build(shape)
        return norm

    def build(self, input_shape):
        self._rank, channels = _convs.rank_of(input_shape), input_shape[-1]
        if self.causal and self._rank != 1:
            raise ValueError(
                f"`causal` convolutions are for sequences (batch, steps, channels); got an "
                f"input of shape {tuple(input_shape)}."
            )
        steps = self.branch_steps()
        if steps[0].groups > 1 and channels % self.groups:
            raise ValueError(f"`groups`={self.groups} must divide the input channels ({channels}).")
        branch_shape = self._build_branch(input_shape, steps)
        self._build_shortcut(input_shape, branch_shape)

    def _build_branch(self, input_shape, steps: list[ConvStep]):
        """Make the branch's layers; return the branch's output shape."""
        dtype, last = self.dtype_policy, len(steps) - 1
        self.preact_bn = self._norm("preact_bn", input_shape) if self.preact else None
        self.convs, self.norms = [], []
        shape = input_shape
        for i, step in enumerate(steps):
            followed_by_bn = not (self.preact and i == last)
            zero_kernel = self.zero_init_residual and self.preact and i == last
            conv = _convs.conv(
                step.filters,
                step.kernel_size,
                rank=self._rank,
                strides=step.strides,
                groups=step.groups,
                dilation_rate=step.dilation_rate,
                causal=self.causal,
                use_bias=self._conv_bias(followed_by_bn),
                kernel_initializer="zeros" if zero_kernel else self.kernel_initializer,
                name=f"{self.name}_conv{i + 1}",
                dtype=dtype,
            )
            shape = _convs.padded_shape(shape, conv)
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            self.convs.append(conv)
            if followed_by_bn:
                zero_gamma = self.zero_init_residual and i == last
                self.norms.append(self._norm(f"bn{i + 1}", shape, zero_gamma=zero_gamma))
        self.se = None
        if self.se_ratio:
            self.se = SqueezeExcite(self.se_ratio, name=f"{self.name}_se", dtype=dtype)
            self.se.build(shape)
        self.dropout = None
        if self.dropout_rate:
            self.dropout = keras.layers.Dropout(self.dropout_rate, name=f"{self.name}_dropout")
        self.drop_path = None
        if self.drop_path_rate:
            self.drop_path = DropPath(
                self.drop_path_rate, name=f"{self.name}_drop_path", dtype=dtype
            )
        return shape

    def _resolve_shortcut(self, channels: int) -> str:
        """The shortcut layer this block needs: identity, pad, projection, gated or none."""
        same = channels == self.output_filters and self.strides == 1
        if self.shortcut in ("A", "B") and same:
            return "identity"
        if self.shortcut == "A":
            if self.output_filters < channels:
                raise ValueError(
                    f"shortcut='A' zero-pads, so it cannot map {channels} channels to "
                    f"{self.output_filters}: use shortcut='B' or shortcut='C' (projection)."
                )
            return "pad"
        return "projection" if self.shortcut in ("B", "C") else self.shortcut

    def _build_shortcut(self, input_shape, branch_shape) -> None:
        dtype, channels = self.dtype_policy, input_shape[-1]
        self._shortcut_kind = self._resolve_shortcut(channels)
        reshapes = branch_shape[-1] != channels or self.strides != 1
        self.shortcut_layer, self.gate = None, None
        normed_identity = self._shortcut_kind == "identity" and self.identity_norm
        if self._shortcut_kind == "pad" or normed_identity:
            self.shortcut_layer = IdentityShortcut(
                self.output_filters,
                self.strides,
                mode=self._shortcut_kind,
                norm=self.identity_norm,
                **Norm(self.bn_momentum, self.bn_epsilon, self.bn_scale).layer_kwargs(),
                name=f"{self.name}_shortcut",
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
                bn_scale=self.bn_scale,
                kernel_initializer=self.kernel_initializer,
                name=f"{self.name}_shortcut",
                dtype=dtype,
            )
        if self.shortcut_layer is not None:
            self.shortcut_layer.build(input_shape)
        if self._shortcut_kind == "gated":
            self.gate = GatedShortcut(name=f"{self.name}_gate", dtype=dtype)
            self.gate.build([branch_shape, branch_shape])

    def call(self, inputs, training=None):
        x = inputs
        if self.preact_bn is not None:
            x = self._act(self.preact_bn(inputs, training=training))
        y = self._branch(x, training)
        if self._shortcut_kind != "none":
            projected = isinstance(self.shortcut_layer, ProjectionShortcut)
            carry = x if projected else inputs  # pre-activation projects the normed input
            if self.shortcut_layer is not None:
                carry = self.shortcut_layer(carry, training=training)
            y = self.gate([carry, y]) if self.gate is not None else carry + y
        return y if self.preact else self._act(y)

    def _branch(self, x, training):
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            x = conv(_convs.symmetric_pad(x, conv))
            norm = self._norm_after(i)
            if norm is not None:
                x = norm(x, training=training)
            if i < last:
                x = self._act(x)
                if self.dropout is not None:  # between convolutions, as in Wide ResNets
                    x = self.dropout(x, training=training)
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        sizes = (_convs.strided_size(d, self.strides) for d in input_shape[1:-1])
        return (input_shape[0], *sizes, self.output_filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate,
            "causal": self.causal,
            "preact": self.preact,
            "groups": self.groups,
            "base_width": self.base_width,
            "se_ratio": self.se_ratio,
            "drop_path_rate": self.drop_path_rate,
            "dropout_rate": self.dropout_rate,
            "zero_init_residual": self.zero_init_residual,
            "shortcut": self.shortcut,
            "identity_norm": self.identity_norm,
            "avg_down": self.avg_down,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "bn_scale": self.bn_scale,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_residual")
class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions plus a shortcut (He et al., 2016); `output_filters == filters`.
    With `kernel_size` a tuple, one convolution per size (the first strided).

    Args: as `ResidualBlock`.

    Example:
    >>> import numpy as np
    >>> tuple(BasicBlock(32, strides=2, shortcut="A")(np.ones((2, 8, 8, 16), "float32")).shape)
    (2, 4, 4, 32)
    >>> block = BasicBlock(64, kernel_size=(8, 5, 3))  # Wang et al.'s, on a sequence
    >>> tuple(block(np.ones((2, 150, 1), "float32")).shape), len(block.convs)
    ((2, 150, 64), 3)
    """

    def _grouped_channels(self):
        return [("bottleneck width", self.bottleneck_width), ("filters", self.filters)]

    def branch_steps(self) -> list[ConvStep]:
        sizes = self.kernel_size if isinstance(self.kernel_size, tuple) else (self.kernel_size,) * 2
        last = len(sizes) - 1
        return [
            ConvStep(
                self.filters if i == last else self.bottleneck_width,
                size,
                self.strides if i == 0 else 1,
                self.groups,
                self.dilation_rate,
            )
            for i, size in enumerate(sizes)
        ]


@keras.saving.register_keras_serializable(package="keras_residual")
class BottleneckBlock(ResidualBlock):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand by `expansion`, plus a shortcut.

    Args:
        expansion: output channels are `filters * expansion`.
        stride_in_1x1: the stride on the first 1x1 (the original paper and
            `keras.applications.ResNet50`) instead of the 3x3 (torchvision's "v1.5").
        filters, strides, **kwargs: as `ResidualBlock`.

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
        self.stride_in_1x1 = _checks.flag("stride_in_1x1", stride_in_1x1)
        super().__init__(filters, strides, **kwargs)
        if isinstance(self.kernel_size, tuple):
            raise ValueError(
                "A bottleneck block has one spatial convolution: `kernel_size` must be one "
                f"integer, got {self.kernel_size}."
            )

    def branch_steps(self) -> list[ConvStep]:
        first, middle = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
        return [
            ConvStep(self.bottleneck_width, 1, first),
            ConvStep(
                self.bottleneck_width, self.kernel_size, middle, self.groups, self.dilation_rate
            ),
            ConvStep(self.output_filters, 1),
        ]

    def get_config(self):
        return {
            **super().get_config(),
            "expansion": self.expansion,
            "stride_in_1x1": self.stride_in_1x1,
        }
