"""Dtype policies: Keras's convention in the library, `"auto"` at the entry points.

Layers and builders follow Keras's global dtype policy (float32 unless the user sets one),
or the `dtype=` they are given. The jobs (`train`, `search`, benchmarks) resolve
`"auto"` once with `resolve_dtype` and pass the result down: mixed bfloat16 where the
CPU computes bfloat16 natively (ResNet training ~1.4x faster there), mixed float16 on a
GPU with tensor cores, else float32.
"""

from __future__ import annotations

import contextlib
import functools
import os

import keras

AUTO = "auto"
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16", "bfloat16", "float16")


@functools.cache
def cpu_has_native_bfloat16() -> bool:
    """True on a CPU with bfloat16 dot products (AVX512_BF16 or AMX) that oneDNN uses."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        return False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _gpu_compute_capabilities() -> list[tuple[int, int]]:
    """(major, minor) of each GPU the Keras backend sees."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
        return [tuple(d.get("compute_capability") or (0, 0)) for d in details]
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        versions = (str(getattr(d, "compute_capability", "0.0")).split(".") for d in gpus)
        return [(int(v[0]), int(v[1]) if len(v) > 1 else 0) for v in versions]
    if backend == "torch":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [tuple(torch.cuda.get_device_capability(i)) for i in range(count)]
    return []


def auto_dtype_policy() -> str:
    """The policy `"auto"` stands for on this machine.

    Example:
    >>> auto_dtype_policy() in ("float32", "mixed_bfloat16", "mixed_float16")
    True
    """
    gpus = _gpu_compute_capabilities()
    if gpus:
        return "mixed_float16" if min(gpus) >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"


def resolve_dtype(dtype: str | None = AUTO) -> str:
    """A dtype policy name: `"auto"` resolved for this machine, None as Keras's global
    policy, any other name checked.

    Args:
        dtype: `"auto"`, None, or one of `float32`, `mixed_bfloat16`, `mixed_float16`,
            `bfloat16`, `float16`.

    Example:
    >>> resolve_dtype("float32"), resolve_dtype(None)
    ('float32', 'float32')
    """
    if dtype is None:
        return keras.config.dtype_policy().name
    if dtype == AUTO:
        return auto_dtype_policy()
    if dtype not in POLICIES:
        raise ValueError(f"`dtype` must be 'auto' or one of {', '.join(POLICIES)}; got {dtype!r}.")
    return dtype


@contextlib.contextmanager
def dtype_policy_scope(dtype: str | None):
    """Make `dtype` Keras's global policy inside the block (None: leave it as it is).

    Example:
    >>> with dtype_policy_scope("mixed_bfloat16"):
    ...     keras.layers.Dense(2).compute_dtype
    'bfloat16'
    """
    previous = keras.config.dtype_policy()
    policy = keras.dtype_policies.get(resolve_dtype(dtype))
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)
