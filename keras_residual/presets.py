"""Named architectures: a table of specs. `get_spec("resnet56")` is one, `build` makes it."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import keras

from keras_residual.fast_cifar import FAST_CIFAR_SIZES, fast_cifar_spec
from keras_residual.models import (
    densenet_spec,
    highway_spec,
    resnet_cifar_spec,
    resnet_spec,
    resnext_spec,
    wide_resnet_spec,
)
from keras_residual.network import build_network
from keras_residual.spec import Spec

SE = 1 / 16  # Hu et al.'s reduction ratio r = 16

# CIFAR ResNets use the paper's option A (zero-pad) shortcuts, the others option B.
_TABLE: dict[str, Spec] = {
    **{f"resnet{d}": resnet_cifar_spec(d, shortcut="A") for d in (20, 32, 44, 56, 110, 1202)},
    **{f"plain{d}": resnet_cifar_spec(d, plain=True) for d in (20, 32, 44, 56, 110)},
    **{f"se_resnet{d}": resnet_cifar_spec(d, se_ratio=SE) for d in (20, 56, 110)},
    **{f"highway{d}": highway_spec(d) for d in (20, 56)},
    "preact_resnet110": resnet_cifar_spec(110, preact=True),
    "preact_resnet164": resnet_cifar_spec(164, block="bottleneck", preact=True),
    "preact_resnet1001": resnet_cifar_spec(1001, block="bottleneck", preact=True),
    "wrn16_8": wide_resnet_spec(16, widen_factor=8),
    "wrn28_10": wide_resnet_spec(28, widen_factor=10, dropout_rate=0.3),
    "wrn40_4": wide_resnet_spec(40, widen_factor=4),
    "resnext29_8x64d": resnext_spec(29, cardinality=8, base_width=64),
    "resnext29_16x64d": resnext_spec(29, cardinality=16, base_width=64),
    "densenet_bc100_k12": densenet_spec(100, growth_rate=12),
    "densenet_bc250_k24": densenet_spec(250, growth_rate=24),
    "densenet_bc190_k40": densenet_spec(190, growth_rate=40),
    **{f"resnet{d}": resnet_spec(d) for d in (18, 34, 50, 101, 152)},
    **{f"plain{d}": resnet_spec(d, plain=True) for d in (18, 34)},
    **{f"preact_resnet{d}": resnet_spec(d, preact=True) for d in (18, 34, 50, 101, 152)},
    "resnet50d": resnet_spec(50, deep_stem=True, avg_down=True),
    "se_resnet50": resnet_spec(50, se_ratio=SE),
    "resnext50_32x4d": resnet_spec(50, groups=32, base_width=4),
    "resnext101_32x8d": resnet_spec(101, groups=32, base_width=8),
    "wide_resnet50_2": resnet_spec(50, base_width=128),
    **{f"fast_cifar_{size}": fast_cifar_spec(size) for size in FAST_CIFAR_SIZES},
    "resnet50_keras": resnet_spec(50, keras_compat=True),
    "resnet50v2_keras": resnet_spec(50, keras_compat=True, preact=True),
}
# Every preset's model carries the preset's name.
PRESETS: dict[str, Spec] = {name: spec.replace(name=name) for name, spec in _TABLE.items()}


def list_presets() -> list[str]:
    """Names accepted by `get_spec` and `build`, sorted.

    Example:
    >>> "resnet56" in list_presets()
    True
    """
    return sorted(PRESETS)


def get_spec(name: str) -> Spec:
    """The spec of the preset `name`; unknown names raise with close matches.

    Example:
    >>> spec = get_spec("resnet20")
    >>> spec.depths, spec.shortcut
    ((3, 3, 3), 'A')
    """
    if not isinstance(name, str):
        raise ValueError(
            f"A preset name must be a string such as 'resnet20', got {name!r}; "
            "`keras_residual.list_presets()` lists them."
        )
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=4, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown preset {name!r}.{hint} `keras_residual.list_presets()` lists all "
            f"{len(PRESETS)}."
        )
    return PRESETS[name]


def build(
    name: str,
    input_shape: Sequence[int | None] | None = None,
    num_classes: int | None = None,
    *,
    dtype: str | None = None,
    **changes,
) -> keras.Model:
    """Build the preset `name`; `changes` replace fields of its spec.

    Args:
        name: a preset (see `list_presets()`).
        input_shape, num_classes: of the data (default: the preset's).
        dtype: a Keras dtype policy name (None: Keras's global policy).
        **changes: spec fields to change, e.g. `shortcut="B"` or `se_ratio=0.25`.

    Example:
    >>> model = build("resnet20", input_shape=(28, 28, 1), num_classes=10)
    >>> model.name, model.output_shape
    ('resnet20', (None, 10))
    """
    spec = get_spec(name)
    if input_shape is not None:
        changes["input_shape"] = input_shape
    if num_classes is not None:
        changes["num_classes"] = num_classes
    return build_network(spec.replace(**changes), dtype=dtype)
