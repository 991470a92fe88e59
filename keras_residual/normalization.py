"""Batch normalization that trains with TensorFlow's fused kernel (on the TF backend)."""

from __future__ import annotations

import keras

if keras.config.backend() == "tensorflow":
    import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_residual")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step on channels-last sequences and
    maps (3-D or 4-D inputs) runs TensorFlow's fused batch-norm kernel on the TensorFlow
    backend: one op forward and one backward instead of a chain of moments and elementwise
    ops. Same weights, config and
    inference path as the Keras layer; the moving variance takes the unbiased batch variance
    (as in Keras 2 and PyTorch). Everything else (other backends, masks, other ranks or
    axes) is exactly the Keras layer.

    Args: those of `keras.layers.BatchNormalization`.

    Example:
    >>> import numpy as np
    >>> layer = FusedBatchNormalization()
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, (8, 4, 4, 3)).astype("float32")
    >>> y = layer(x, training=True)
    >>> bool(abs(float(keras.ops.mean(y))) < 1e-5 and abs(float(keras.ops.std(y)) - 1) < 1e-2)
    True
    """

    def call(self, inputs, training=None, mask=None):
        fusable = (
            keras.config.backend() == "tensorflow"
            and training is True
            and mask is None
            and len(inputs.shape) in (3, 4)
            and self.axis in (-1, 3)
            and self.center
            and not self.renorm
            and not self.synchronized
        )
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        # Steps as height, by expand_dims and squeeze: their gradients are reshapes, where a
        # slice's (StridedSliceGrad) copied the activations, 13% of the op time of a 1D step.
        x = inputs if len(inputs.shape) == 4 else tf.expand_dims(inputs, 2)
        if x.dtype == tf.bfloat16 and x.shape[-1] % 16:
            # oneDNN's bfloat16 kernel is fast only for multiples of 16 channels (8 channels:
            # 10x slower than float32); other widths normalise in float32.
            x = tf.cast(x, tf.float32)
        beta = tf.convert_to_tensor(self.beta)
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones_like(beta)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            gamma,
            beta,
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1 - momentum))
        outputs = outputs if len(inputs.shape) == 4 else tf.squeeze(outputs, 2)
        return tf.cast(outputs, inputs.dtype)
