"""`Residual`: a shortcut around any Keras layer or model (`shortcut(x) + inner(x)`)."""

from __future__ import annotations

import keras

from keras_residual import _checks
from keras_residual.drop_path import DropPath

SHORTCUT_KINDS = ("auto", "identity", "projection")
NORM_PLACES = (None, "pre", "post")
NORM_KINDS = ("layer", "batch")


@keras.saving.register_keras_serializable(package="keras_residual")
class Residual(keras.layers.Layer):
    """`shortcut(x) + inner(x)` around any layer that keeps the input's shape but for its
    channels (last axis): a `Dense`, an `LSTM`/`GRU` with `return_sequences=True`, a
    `MultiHeadAttention` (called as self-attention), a stack of convolutions, a sub-model.

    Args:
        inner: the Keras layer or model of the residual branch.
        shortcut: `"identity"`; `"projection"` (a bias-free `Dense` over the channels);
            `"auto"`: the identity where the channels match, else the projection.
        norm: `None`; `"pre"`, `x + inner(norm(x))` (the pre-norm transformer block,
            stable in deep stacks); `"post"`, `norm(x + inner(x))` (the original
            transformer and ResNet ordering).
        norm_kind: `"layer"` (`LayerNormalization`, for sequences) or `"batch"`.
        drop_path_rate: drops the whole branch per sample while training.

    Example:
    >>> import numpy as np
    >>> x = np.ones((2, 20, 8), "float32")
    >>> lstm = Residual(keras.layers.LSTM(8, return_sequences=True), norm="pre")
    >>> tuple(lstm(x).shape)
    (2, 20, 8)
    >>> attention = Residual(keras.layers.MultiHeadAttention(2, key_dim=4), norm="pre")
    >>> tuple(attention(x).shape)
    (2, 20, 8)
    >>> tuple(Residual(keras.layers.Dense(16))(x).shape)  # projects the shortcut to 16
    (2, 20, 16)
    """

    def __init__(
        self,
        inner: keras.layers.Layer,
        shortcut: str = "auto",
        norm: str | None = None,
        norm_kind: str = "layer",
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(inner, keras.layers.Layer):
            raise ValueError(f"`inner` must be a Keras layer or model, got {type(inner).__name__}.")
        self.inner = inner
        self.shortcut = _checks.choice("shortcut", shortcut, SHORTCUT_KINDS)
        self.norm = _checks.choice("norm", norm, NORM_PLACES)
        self.norm_kind = _checks.choice("norm_kind", norm_kind, NORM_KINDS)
        self.drop_path_rate = _checks.rate("drop_path_rate", drop_path_rate)
        self._self_attention = isinstance(inner, keras.layers.MultiHeadAttention)

    def _inner_output_shape(self, input_shape):
        if self._self_attention:
            return tuple(self.inner.compute_output_shape(input_shape, input_shape))
        return tuple(self.inner.compute_output_shape(input_shape))

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if not self.inner.built:
            if self._self_attention:
                self.inner.build(input_shape, input_shape)
            else:
                self.inner.build(input_shape)
        output_shape = self._inner_output_shape(input_shape)
        if output_shape[:-1] != input_shape[:-1]:
            raise ValueError(
                f"Residual needs `inner` to keep the input's shape but for its channels: "
                f"{self.inner.name} maps {input_shape} to {output_shape}. Keep every step "
                "(an LSTM or GRU with return_sequences=True, 'same' padding, stride 1)."
            )
        channels, outputs = input_shape[-1], output_shape[-1]
        if self.shortcut == "identity" and channels != outputs:
            raise ValueError(
                f"shortcut='identity' cannot add {channels} input channels to the "
                f"{outputs} that {self.inner.name} gives: use shortcut='auto' or 'projection'."
            )
        self.projection = None
        if self.shortcut == "projection" or channels != outputs:
            self.projection = keras.layers.Dense(
                outputs, use_bias=False, name="projection", dtype=self.dtype_policy
            )
            self.projection.build(input_shape)
        self.norm_layer = None
        if self.norm:
            kind = keras.layers.LayerNormalization
            if self.norm_kind == "batch":
                kind = keras.layers.BatchNormalization
            self.norm_layer = kind(name=f"{self.norm}_norm", dtype=self.dtype_policy)
            self.norm_layer.build(input_shape if self.norm == "pre" else output_shape)
        self.drop_path = None
        if self.drop_path_rate:
            dtype = self.dtype_policy
            self.drop_path = DropPath(self.drop_path_rate, name="drop_path", dtype=dtype)

    def call(self, inputs, training=None):
        x = self.norm_layer(inputs, training=training) if self.norm == "pre" else inputs
        y = self.inner(x, x, training=training) if self._self_attention else self.inner(x)
        if self.drop_path is not None:
            y = self.drop_path(y, training=training)
        y = y + (self.projection(inputs) if self.projection is not None else inputs)
        return self.norm_layer(y, training=training) if self.norm == "post" else y

    def compute_output_shape(self, input_shape):
        return self._inner_output_shape(tuple(input_shape))

    def get_config(self):
        return {
            **super().get_config(),
            "inner": keras.saving.serialize_keras_object(self.inner),
            "shortcut": self.shortcut,
            "norm": self.norm,
            "norm_kind": self.norm_kind,
            "drop_path_rate": self.drop_path_rate,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["inner"] = keras.saving.deserialize_keras_object(config["inner"])
        return cls(**config)
