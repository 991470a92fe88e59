"""The CIFAR-10 speed family: wide, shallow residual networks that train to high accuracy
in few epochs (Page's ResNet-9, airbench), built from the toolkit's own layers.

A network of the family: a `PatchWhitening` stem set from the data, then three stages that
each open with conv, 2x2 max-pool, norm and activation and go on with a few basic residual
blocks at that resolution, then global max pooling and the classifier, whose logits are
scaled by 1/9 (airbench's head), with batch-norm momentum 0.6, no batch-norm scales
(airbench keeps them at 1), convolutions that start as the identity (`conv_init="dirac"`)
and airbench's GELU. Trained with the `airbench` recipe (airbench94's hyperparameters,
Lookahead; `default_recipe`).
"""

from __future__ import annotations

from collections.abc import Sequence

from keras_residual import _checks
from keras_residual.models import _builder
from keras_residual.spec import Norm, ResNetSpec

# Size -> the stages' filters and blocks. "m" is Page's ResNet-9 (128/256/512, a residual
# block after the first and last pools); "s" has airbench94's widths (64/256/256).
FAST_CIFAR_SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "s": {"filters": (64, 256, 256), "depths": (1, 0, 1)},
    "m": {"filters": (128, 256, 512), "depths": (1, 0, 1)},
    "l": {"filters": (128, 384, 512), "depths": (1, 1, 1)},
}
# airbench's head, norms (scales fixed at 1) and initialisation (identity kernels): the
# `airbench` recipe's learning rate is tuned for them.
FAST_CIFAR_HEAD = {
    "pooling": "max",
    "logit_scale": 1 / 9,
    "norm": Norm(momentum=0.6, epsilon=1e-5, scale=False),
    "conv_init": "dirac",
}
# airbench's activation: more accurate than ReLU in a short run of `fast_cifar_s` at about
# its speed (docs/cifar10.md); the CIFAR-10 search's default space takes it too.
FAST_CIFAR_ACTIVATION = "gelu"


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
    >>> spec.filters, spec.depths, spec.downsample, spec.stem, spec.pooling, spec.activation
    ((128, 256, 512), (1, 0, 1), 'pool', 'whiten', 'max', 'gelu')
    """
    _checks.choice("size", size, FAST_CIFAR_SIZES)
    fields = {
        "name": f"fast_cifar_{size}",
        "activation": FAST_CIFAR_ACTIVATION,
        "stem": "whiten",
        "downsample": "pool",
        "strides": (2, 2, 2),
        **FAST_CIFAR_HEAD,
        **FAST_CIFAR_SIZES[size],
        **fields,
    }
    return ResNetSpec(input_shape=tuple(input_shape), num_classes=num_classes, **fields)


fast_cifar = _builder(
    fast_cifar_spec,
    "A network of the CIFAR-10 speed family as a Keras model.",
    ">>> fast_cifar('s').get_layer('stage3_pool').output.shape\n    (None, 3, 3, 256)",
)
