"""The hidden layers' activations: `get(name)`, with GELU on TensorFlow as two fused kernels.

Keras's `gelu` on TensorFlow runs erf and the arithmetic around it as separate Eigen ops, each
a pass over the activations in memory, and differentiates them op by op: where convolutions
are fast (AMX), those passes cost more than the convolutions (benchmarks/step_profile.py).
Here XLA compiles the forward pass and the derivative `Phi(x) + x * phi(x)` each into one
loop over the tensor (compiled once a shape; XLA is kept off the convolutions, which it runs
slower than oneDNN on CPUs).
"""

from __future__ import annotations

import math

import keras

if keras.config.backend() == "tensorflow":
    import tensorflow as tf

    @tf.function(jit_compile=True, reduce_retracing=True)
    def _tf_gelu_forward(x):
        # tf.nn.gelu's own ops, which the TFLite converter turns into its GELU kernel.
        return tf.cast(tf.nn.gelu(tf.cast(x, tf.float32), approximate=False), x.dtype)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def _tf_gelu_backward(x, upstream):
        x32 = tf.cast(x, tf.float32)
        cdf = 0.5 * (1.0 + tf.math.erf(x32 * (1 / math.sqrt(2))))
        pdf = tf.exp(-0.5 * tf.square(x32)) * (1 / math.sqrt(2 * math.pi))
        return upstream * tf.cast(cdf + x32 * pdf, upstream.dtype)

    @tf.custom_gradient
    def _tf_gelu(x):
        return _tf_gelu_forward(x), lambda upstream: _tf_gelu_backward(x, upstream)


@keras.saving.register_keras_serializable(package="keras_residual")
def gelu(x):
    """GELU, `x * Phi(x)` in its exact (erf) form: Keras's `gelu` and PyTorch's `nn.GELU`,
    airbench's activation.

    On TensorFlow it computes in float32 and returns the input's dtype, forward and backward
    each as one XLA-compiled loop; other backends run `keras.activations.gelu`.

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
