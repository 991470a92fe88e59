"""Named architectures: a table of specs. `get_spec("resnet56")` is one, `build` makes it."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import keras

from keras_residual.fast_cifar import FAST_CIFAR_SIZES, fast_cifar_spec
from keras_residual.models import (
    densenet_spec,
    highway_spec,
    resnet_cifar_spec,
    resnet_series_spec,
    resnet_spec,
    resnext_spec,
    tcn_spec,
    wide_resnet_spec,
)
from keras_residual.network import build_network
from keras_residual.spec import Spec

SE = 1 / 16  # Hu et al.'s reduction ratio r = 16

# What a family is, where it comes from and how it trains: every preset's metadata (as
# timm's `default_cfgs`), the reference accuracy per preset below.
_HE = "He et al. 2016, Deep Residual Learning for Image Recognition"
_HE_V2 = "He et al. 2016, Identity Mappings in Deep Residual Networks"
_WANG = (
    "Wang et al. 2017, Time Series Classification from Scratch with Deep Neural "
    "Networks: A Strong Baseline"
)
FAMILIES = {
    "resnet_cifar": ("CIFAR ResNet, option A shortcuts", _HE, "cifar10"),
    "plain_cifar": ("the CIFAR ResNet's plain twin, no shortcuts", _HE, "cifar10"),
    "se_resnet_cifar": ("CIFAR ResNet with squeeze-excitation (r=16)",
                        "Hu et al. 2018, Squeeze-and-Excitation Networks", "cifar10"),
    "highway_cifar": ("Highway network: gated shortcuts",
                      "Srivastava et al. 2015, Training Very Deep Networks", "cifar10"),
    "preact_cifar": ("pre-activation CIFAR ResNet", _HE_V2, "cifar10"),
    "wrn": ("Wide ResNet", "Zagoruyko & Komodakis 2016, Wide Residual Networks", "cifar10"),
    "resnext_cifar": ("CIFAR ResNeXt", "Xie et al. 2017, Aggregated Residual Transformations",
                      "cifar10"),
    "densenet_bc": ("DenseNet-BC", "Huang et al. 2017, Densely Connected Convolutional Networks",
                    "cifar10"),
    "resnet": ("ImageNet ResNet (torchvision's layout)", _HE, "imagenet"),
    "plain": ("the ImageNet ResNet's plain twin", _HE, "imagenet"),
    "preact": ("pre-activation ImageNet ResNet", _HE_V2, "imagenet"),
    "resnet_d": ("ResNet-D: deep stem, average-pool downsampling",
                 "He et al. 2019, Bag of Tricks for Image Classification", "imagenet"),
    "se_resnet": ("SE-ResNet", "Hu et al. 2018, Squeeze-and-Excitation Networks", "imagenet"),
    "resnext": ("ResNeXt", "Xie et al. 2017, Aggregated Residual Transformations", "imagenet"),
    "wide_resnet": ("Wide ResNet-50-2 (torchvision)",
                    "Zagoruyko & Komodakis 2016, Wide Residual Networks", "imagenet"),
    "fast_cifar": ("the CIFAR-10 speed family: airbench's and Page's ResNet-9 layout",
                   "Jordan 2024, 94% on CIFAR-10 in 3.29 Seconds on a Single GPU (airbench)",
                   "cifar10"),
    "fast_mnist": ("the speed family's pooling layout sized for MNIST: ResNet-8 at width 32",
                   "this toolkit: the MNIST search's best network on 2 CPU cores "
                   "(benchmarks/results)", "mnist"),
    "keras_applications": ("keras.applications' ResNet50 / ResNet50V2, weight-compatible",
                           _HE, "imagenet"),
    "resnet_series": ("ResNet for time-series classification: three blocks of 8/5/3 "
                      "convolutions", _WANG, "ucr"),
    "plain_series": ("the time-series ResNet's plain twin, no shortcuts", _WANG, "ucr"),
    "tcn": ("residual TCN: dilated causal convolutions, receptive field 253 steps",
            "Bai et al. 2018, An Empirical Evaluation of Generic Convolutional and Recurrent "
            "Networks for Sequence Modeling", "ucr"),
}  # fmt: skip
# Top-1 accuracy the paper (or torchvision, for ImageNet) reports, percent.
REFERENCE_ACCURACY = {
    "resnet20": 91.25, "resnet32": 92.49, "resnet44": 92.83, "resnet56": 93.03,
    "resnet110": 93.57, "resnet1202": 92.07, "preact_resnet110": 93.63,
    "preact_resnet164": 94.54, "preact_resnet1001": 95.08, "wrn16_8": 95.19,
    "wrn28_10": 96.11, "wrn40_4": 95.47, "resnext29_8x64d": 96.35, "resnext29_16x64d": 96.42,
    "densenet_bc100_k12": 95.49, "densenet_bc250_k24": 96.38, "densenet_bc190_k40": 96.54,
    "resnet18": 69.76, "resnet34": 73.31, "resnet50": 76.13, "resnet101": 77.37,
    "resnet152": 78.31, "resnext50_32x4d": 77.62, "resnext101_32x8d": 79.31,
    "wide_resnet50_2": 78.47, "fast_cifar_s": 94.01,
}  # fmt: skip


@dataclass(frozen=True)
class PresetInfo:
    """A preset's metadata: what it is, its paper, the data and accuracy the paper reports,
    and the recipe it trains with unless told (`default_recipe`)."""

    name: str
    family: str
    description: str
    paper: str
    dataset: str
    reference_accuracy: float | None
    recipe: str
    input_shape: tuple


SE = 1 / 16  # Hu et al.'s reduction ratio r = 16

# CIFAR ResNets use the paper's option A (zero-pad) shortcuts, the others option B.
_TABLE: dict[str, tuple[str, Spec]] = {
    **{f"resnet{d}": ("resnet_cifar", resnet_cifar_spec(d, shortcut="A"))
       for d in (20, 32, 44, 56, 110, 1202)},
    **{f"plain{d}": ("plain_cifar", resnet_cifar_spec(d, plain=True))
       for d in (20, 32, 44, 56, 110)},
    **{f"se_resnet{d}": ("se_resnet_cifar", resnet_cifar_spec(d, se_ratio=SE))
       for d in (20, 56, 110)},
    **{f"highway{d}": ("highway_cifar", highway_spec(d)) for d in (20, 56)},
    "preact_resnet110": ("preact_cifar", resnet_cifar_spec(110, preact=True)),
    "preact_resnet164": ("preact_cifar",
                         resnet_cifar_spec(164, block="bottleneck", preact=True)),
    "preact_resnet1001": ("preact_cifar",
                          resnet_cifar_spec(1001, block="bottleneck", preact=True)),
    "wrn16_8": ("wrn", wide_resnet_spec(16, widen_factor=8)),
    "wrn28_10": ("wrn", wide_resnet_spec(28, widen_factor=10, dropout_rate=0.3)),
    "wrn40_4": ("wrn", wide_resnet_spec(40, widen_factor=4)),
    "resnext29_8x64d": ("resnext_cifar", resnext_spec(29, cardinality=8, base_width=64)),
    "resnext29_16x64d": ("resnext_cifar", resnext_spec(29, cardinality=16, base_width=64)),
    "densenet_bc100_k12": ("densenet_bc", densenet_spec(100, growth_rate=12)),
    "densenet_bc250_k24": ("densenet_bc", densenet_spec(250, growth_rate=24)),
    "densenet_bc190_k40": ("densenet_bc", densenet_spec(190, growth_rate=40)),
    **{f"resnet{d}": ("resnet", resnet_spec(d)) for d in (18, 34, 50, 101, 152)},
    **{f"plain{d}": ("plain", resnet_spec(d, plain=True)) for d in (18, 34)},
    **{f"preact_resnet{d}": ("preact", resnet_spec(d, preact=True))
       for d in (18, 34, 50, 101, 152)},
    "resnet50d": ("resnet_d", resnet_spec(50, deep_stem=True, avg_down=True)),
    "se_resnet50": ("se_resnet", resnet_spec(50, se_ratio=SE)),
    "resnext50_32x4d": ("resnext", resnet_spec(50, groups=32, base_width=4)),
    "resnext101_32x8d": ("resnext", resnet_spec(101, groups=32, base_width=8)),
    "wide_resnet50_2": ("wide_resnet", resnet_spec(50, base_width=128)),
    **{f"fast_cifar_{size}": ("fast_cifar", fast_cifar_spec(size)) for size in FAST_CIFAR_SIZES},
    "fast_mnist": ("fast_mnist", resnet_cifar_spec(
        input_shape=(28, 28, 1), blocks_per_stage=1, width=32, shortcut="B", stem="whiten",
        downsample="pool", strides=(2, 2, 2))),
    "resnet50_keras": ("keras_applications", resnet_spec(50, keras_compat=True)),
    "resnet50v2_keras": ("keras_applications",
                         resnet_spec(50, keras_compat=True, preact=True)),
    "resnet_series": ("resnet_series", resnet_series_spec()),
    "plain_series": ("plain_series", resnet_series_spec(plain=True)),
    "tcn": ("tcn", tcn_spec()),
}  # fmt: skip
# The speed family's head is tuned for airbench's learning rate; the rest train with `fast`.
_RECIPES = {
    "fast_cifar": "airbench",
    **dict.fromkeys(("resnet_series", "plain_series", "tcn"), "series"),
}
# Every preset's model carries the preset's name.
PRESETS: dict[str, Spec] = {name: spec.replace(name=name) for name, (_, spec) in _TABLE.items()}
PRESET_INFO: dict[str, PresetInfo] = {
    name: PresetInfo(
        name,
        family,
        *FAMILIES[family],
        REFERENCE_ACCURACY.get(name),
        _RECIPES.get(family, "fast"),
        tuple(PRESETS[name].input_shape),
    )
    for name, (family, _) in _TABLE.items()
}


def preset_info(name: str) -> PresetInfo:
    """The metadata of the preset `name`.

    Example:
    >>> info = preset_info("resnet56")
    >>> info.paper.split(",")[0], info.dataset, info.reference_accuracy, info.recipe
    ('He et al. 2016', 'cifar10', 93.03, 'fast')
    """
    get_spec(name)  # unknown names raise with close matches
    return PRESET_INFO[name]


def default_recipe(model: str) -> str:
    """The recipe a preset trains with unless told (its `PresetInfo.recipe`: `airbench` for
    the CIFAR-10 speed family, whose head is tuned for that recipe's learning rate, else
    `fast`); `fast` for a model that is no preset.

    Example:
    >>> default_recipe("fast_cifar_s"), default_recipe("resnet20"), default_recipe("mine")
    ('airbench', 'fast', 'fast')
    """
    info = PRESET_INFO.get(str(model))
    return info.recipe if info else "fast"


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
    /,
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
        **changes: spec fields to change, e.g. `shortcut="B"`, `se_ratio=0.25` or the
            model's `name`.

    Example:
    >>> model = build("resnet20", input_shape=(28, 28, 1), num_classes=10)
    >>> model.name, model.output_shape
    ('resnet20', (None, 10))
    >>> build("resnet20", name="mynet").name
    'mynet'
    """
    spec = get_spec(name)
    if input_shape is not None:
        changes["input_shape"] = input_shape
    if num_classes is not None:
        changes["num_classes"] = num_classes
    return build_network(spec.replace(**changes), dtype=dtype)
