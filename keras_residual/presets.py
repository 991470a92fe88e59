"""Named configurations: a table of data, not code. `build("resnet56")` makes one."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import keras

from keras_residual.models import BUILDERS

SE = 1 / 16  # Hu et al.'s reduction ratio r = 16

# name -> (builder, arguments). CIFAR ResNets use the paper's option A (zero-pad) shortcuts.
PRESETS: dict[str, tuple[str, dict]] = {
    **{
        f"resnet{d}": ("resnet_cifar", {"depth": d, "shortcut": "pad"})
        for d in (20, 32, 44, 56, 110, 1202)
    },
    **{f"plain{d}": ("resnet_cifar", {"depth": d, "plain": True}) for d in (20, 32, 44, 56, 110)},
    **{f"se_resnet{d}": ("resnet_cifar", {"depth": d, "se_ratio": SE}) for d in (20, 56, 110)},
    **{f"highway{d}": ("highway", {"depth": d}) for d in (20, 56)},
    "preact_resnet110": ("resnet_cifar", {"depth": 110, "preact": True}),
    "preact_resnet164": ("resnet_cifar", {"depth": 164, "block": "bottleneck", "preact": True}),
    "preact_resnet1001": ("resnet_cifar", {"depth": 1001, "block": "bottleneck", "preact": True}),
    "wrn16_8": ("wide_resnet", {"depth": 16, "widen_factor": 8}),
    "wrn28_10": ("wide_resnet", {"depth": 28, "widen_factor": 10, "dropout_rate": 0.3}),
    "wrn40_4": ("wide_resnet", {"depth": 40, "widen_factor": 4}),
    "resnext29_8x64d": ("resnext", {"depth": 29, "cardinality": 8, "base_width": 64}),
    "resnext29_16x64d": ("resnext", {"depth": 29, "cardinality": 16, "base_width": 64}),
    "densenet_bc100_k12": ("densenet", {"depth": 100, "growth_rate": 12}),
    "densenet_bc250_k24": ("densenet", {"depth": 250, "growth_rate": 24}),
    "densenet_bc190_k40": ("densenet", {"depth": 190, "growth_rate": 40}),
    **{f"resnet{d}": ("resnet", {"depth": d}) for d in (18, 34, 50, 101, 152)},
    **{f"plain{d}": ("resnet", {"depth": d, "plain": True}) for d in (18, 34)},
    **{
        f"preact_resnet{d}": ("resnet", {"depth": d, "preact": True})
        for d in (18, 34, 50, 101, 152)
    },
    "resnet50d": ("resnet", {"depth": 50, "deep_stem": True, "avg_down": True}),
    "se_resnet50": ("resnet", {"depth": 50, "se_ratio": SE}),
    "resnext50_32x4d": ("resnet", {"depth": 50, "groups": 32, "base_width": 4}),
    "resnext101_32x8d": ("resnet", {"depth": 101, "groups": 32, "base_width": 8}),
    "wide_resnet50_2": ("resnet", {"depth": 50, "base_width": 128}),
    "resnet50_keras": ("resnet", {"depth": 50, "keras_compat": True}),
    "resnet50v2_keras": ("resnet", {"depth": 50, "keras_compat": True, "preact": True}),
}


def list_presets() -> list[str]:
    """Names accepted by `build`, sorted.

    Example:
    >>> "resnet56" in list_presets()
    True
    """
    return sorted(PRESETS)


def preset_config(name: str) -> tuple[str, dict]:
    """(builder name, arguments) of a preset; unknown names raise with close matches."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=4, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown preset {name!r}.{hint} `keras_residual.list_presets()` lists all "
            f"{len(PRESETS)}."
        )
    builder, arguments = PRESETS[name]
    return builder, dict(arguments)


def build(
    name: str,
    input_shape: Sequence[int | None] | None = None,
    num_classes: int | None = None,
    **overrides,
) -> keras.Model:
    """Build the preset `name`; `overrides` replace any of its builder's arguments.

    Example:
    >>> model = build("resnet20", input_shape=(28, 28, 1), num_classes=10)
    >>> model.name, model.output_shape
    ('resnet20', (None, 10))
    """
    builder, arguments = preset_config(name)
    if input_shape is not None:
        arguments["input_shape"] = tuple(input_shape)
    if num_classes is not None:
        arguments["num_classes"] = num_classes
    arguments.setdefault("name", name)
    return BUILDERS[builder](**{**arguments, **overrides})
