"""The hidden layers' activations: `get(name)`, with GELU's gradient written out on
TensorFlow (the op forward and backward in bfloat16: Keras's `gelu`, which differentiates erf
op by op, about 5x a ReLU; this about 3x)."""

from __future__ import annotations

import math

import keras

if keras.config.backend() == "tensorflow":
    import tensorflow as tf

    @tf.custom_gradient
    def _tf_gelu(x):
        # The forward pass is tf.nn.gelu's own ops, which the TFLite converter turns into
        # its GELU kernel (an erf written out here is not convertible).
        x32 = tf.cast(x, tf.float32)

        def grad(upstream):
            cdf = 0.5 * (1.0 + tf.math.erf(x32 * (1 / math.sqrt(2))))
            pdf = tf.exp(-0.5 * tf.square(x32)) * (1 / math.sqrt(2 * math.pi))
            return upstream * tf.cast(cdf + x32 * pdf, upstream.dtype)

        return tf.cast(tf.nn.gelu(x32, approximate=False), x.dtype), grad


@keras.saving.register_keras_serializable(package="keras_residual")
def gelu(x):
    """GELU, `x * Phi(x)` in its exact (erf) form: Keras's `gelu` and PyTorch's `nn.GELU`,
    airbench's activation.

    On TensorFlow it computes in float32 and returns the input's dtype, with the derivative
    `Phi(x) + x * phi(x)` as one backward step; other backends run `keras.activations.gelu`.

    Example:
    >>> import numpy as np
    >>> np.round(keras.ops.convert_to_numpy(gelu(np.array([-1.0, 0.0, 2.0]))), 4).tolist()
    [-0.1587, 0.0, 1.9545]
    """
    if keras.config.backend() == "tensorflow":
        return _tf_gelu(tf.convert_to_tensor(x))
    return keras.activations.gelu(x, approximate=False)


def get(name: str):
    """The function of a hidden activation name: `gelu` above for `"gelu"`, else Keras's.

    Example:
    >>> get("gelu") is gelu, get("relu") is keras.activations.relu
    (True, True)
    """
    return gelu if name == "gelu" else keras.activations.get(name)
