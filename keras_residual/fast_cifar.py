"""The CIFAR-10 speed family: wide, shallow residual networks that train to high accuracy
in few epochs (Page's ResNet-9, airbench), built from the toolkit's own layers.

A network of the family: a `PatchWhitening` stem set from the data, then three stages that
each open with conv, 2x2 max-pool, norm and ReLU and go on with a few basic residual
blocks at that resolution, then global pooling and the classifier. Trained with the
`fast_cifar` recipe (one-cycle, label smoothing, flips and 2-pixel shifts, flip TTA).
"""

from __future__ import annotations

from collections.abc import Sequence

from keras_residual import _checks
from keras_residual.models import _builder
from keras_residual.spec import ResNetSpec

# Size -> the stages' filters and blocks. "m" is Page's ResNet-9 (128/256/512, a residual
# block after the first and last pools); "s" has airbench94's widths (64/256/256).
FAST_CIFAR_SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "s": {"filters": (64, 256, 256), "depths": (1, 0, 1)},
    "m": {"filters": (128, 256, 512), "depths": (1, 0, 1)},
    "l": {"filters": (128, 384, 512), "depths": (1, 1, 1)},
}


def fast_cifar_spec(
    size: str = "s",
    input_shape: Sequence[int | None] = (32, 32, 3),
    num_classes: int = 10,
    **fields,
) -> ResNetSpec:
    """A network of the CIFAR-10 speed family (`FAST_CIFAR_SIZES`: "s", "m", "l").

    Args:
        size: the width and depth tier.
        input_shape, num_classes: of the data.
        **fields: other `ResNetSpec` fields (e.g. `shortcut`, `se_ratio`, `norm`).

    Example:
    >>> spec = fast_cifar_spec("m")
    >>> spec.filters, spec.depths, spec.downsample, spec.stem
    ((128, 256, 512), (1, 0, 1), 'pool', 'whiten')
    """
    _checks.choice("size", size, FAST_CIFAR_SIZES)
    fields = {
        "name": f"fast_cifar_{size}",
        "stem": "whiten",
        "downsample": "pool",
        "strides": (2, 2, 2),
        **FAST_CIFAR_SIZES[size],
        **fields,
    }
    return ResNetSpec(input_shape=tuple(input_shape), num_classes=num_classes, **fields)


fast_cifar = _builder(
    fast_cifar_spec,
    "A network of the CIFAR-10 speed family as a Keras model.",
    ">>> fast_cifar('s').get_layer('stage3_pool').output.shape\n    (None, 3, 3, 256)",
)
