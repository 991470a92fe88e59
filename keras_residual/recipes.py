"""Training recipes as data: the `Recipe` type, the named `RECIPES` and the choices their
fields take. Nothing here imports Keras: a recipe is a value, checked when it is made."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

from keras_residual import _checks

# take `momentum` and rate multipliers; "muon": Nesterov SGD with Muon for conv kernels
SGD_OPTIMIZERS = ("sgd", "momentum", "nesterov", "muon")
OPTIMIZERS = (*SGD_OPTIMIZERS, "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "plateau")
UNPLANNED_SCHEDULES = ("constant", "plateau")  # a run may stop at any epoch of these
# `flip`: none, random (each image, each epoch, half the time), or airbench's alternating
# flips (a random half flipped in even epochs, the other half in odd ones).
FLIPS = (False, True, "alternate")
# Test-time augmentation: none, the mirror image, and the mirror pair shifted a pixel.
TTA_MODES = ("none", "flip", "flip_translate")


@dataclass(frozen=True)
class Recipe:
    """How to train: optimizer, learning-rate schedule, regularisation and batch size.

    Args:
        optimizer: one of `OPTIMIZERS` (`make_optimizer` names them).
        learning_rate: the peak rate for `reference_batch` images; it scales linearly
            with `batch_size`.
        reference_batch: the batch size `learning_rate` is given for.
        batch_size: images per step.
        batch_fraction: > 0: batches of this fraction of the training set (at least 1) where
            that is fewer than `batch_size`, at the same `learning_rate` (the published
            time-series recipe's rule: a tenth of the series, at most 64; `for_examples`).
        weight_decay: decoupled weight decay (kernels only unless `decay_norm_and_bias`).
        schedule: `"constant"`, `"step"` (x0.1 at each of `milestones`), `"cosine"`
            (to `anneal_to`, after `warmup_epochs` of linear warm-up) or `"onecycle"`
            (linear up for `warmup_epochs`, linear down to `anneal_to`: `OneCycle`) or
            `"plateau"` (halved after `patience` epochs without a lower training loss,
            down to `anneal_to` of the peak; the weights of the lowest training loss are
            kept at the end). A plateau schedule needs no planned length: a run can stop
            at any epoch.
        patience: epochs without a lower training loss before a plateau schedule halves
            the rate.
        milestones: fractions of training where the step schedule divides by 10.
        warmup_epochs: epochs of linear warm-up from `warmup_from` of the peak (cosine,
            onecycle); at most 30% of a shorter run.
        warmup_from: the warm-up's first rate as a fraction of the peak.
        anneal_to: the last step's rate as a fraction of the peak (cosine, onecycle).
        momentum: of the SGD optimizers ("momentum", "nesterov").
        label_smoothing: of the cross-entropy, in [0, 1).
        decay_norm_and_bias: decay batch-norm scales/shifts and biases too.
        freeze_norm_scale: keep batch-norm scales at their initial 1 (airbench); the
            network then cannot use `zero_init_residual`. A network built with
            `Norm(scale=False)` (the speed family) has none: the same function, and it
            stays so in a saved model, whose reload does not know a frozen scale.
        norm_shift_rate: learning-rate multiplier of batch-norm shifts (SGD optimizers;
            airbench 64).
        muon_rate: with `optimizer="muon"`, the convolution kernels' peak rate (not scaled
            with the batch: Muon's step is normalised; airbench94_muon 0.24). The other
            variables take Nesterov SGD at `learning_rate` (`MuonSGD`).
        muon_momentum: with `optimizer="muon"`, the kernels' momentum (airbench94_muon 0.6).
        lookahead: steps between `Lookahead` synchronisations (airbench 5; 0: off).
        ema: momentum of an exponential moving average of the weights (Keras's
            `use_ema`), used for validation and kept at the end; 0 turns it off.
        flip: horizontal flips, random (True), none (False) or airbench's `"alternate"`
            (a random half of the images in even epochs, the other half in odd ones);
            None: the dataset's default (CIFAR-10 random, MNIST none).
        translate: random shifts of up to this many pixels, or steps of a series (pad and
            crop); None: the dataset's default (CIFAR-10 4, MNIST 0, series 0).
        cutout: side of a square erased at a random place in each image, or length of a
            window of a series (0: none).
        tta: test-time augmentation of `evaluate`: `"none"`, `"flip"` or `"flip_translate"`.

    Example:
    >>> Recipe(learning_rate=0.05, batch_size=256).learning_rate
    0.05
    """

    optimizer: str = "nesterov"
    learning_rate: float = 0.1
    reference_batch: int = 128
    batch_size: int = 128
    batch_fraction: float = 0.0
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    warmup_epochs: float = 0.0
    warmup_from: float = 0.1
    anneal_to: float = 0.0
    patience: int = 50
    momentum: float = 0.9
    label_smoothing: float = 0.0
    decay_norm_and_bias: bool = False
    freeze_norm_scale: bool = False
    norm_shift_rate: float = 1.0
    muon_rate: float = 0.24
    muon_momentum: float = 0.6
    lookahead: int = 0
    ema: float = 0.0
    flip: bool | str | None = None
    translate: int | None = None
    cutout: int = 0
    tta: str = "none"

    def __post_init__(self):
        _checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        _checks.choice("schedule", self.schedule, SCHEDULES)
        _checks.positive_int("batch_size", self.batch_size)
        _checks.positive_int("reference_batch", self.reference_batch)
        _checks.rate("batch_fraction", self.batch_fraction, allow_one=True)
        _checks.positive_int("patience", self.patience)
        _checks.rate("label_smoothing", self.label_smoothing)
        _checks.positive("learning_rate", self.learning_rate)
        _checks.non_negative("weight_decay", self.weight_decay)
        _checks.non_negative("warmup_epochs", self.warmup_epochs)
        _checks.rate("warmup_from", self.warmup_from, allow_one=True)
        _checks.rate("anneal_to", self.anneal_to, allow_one=True)
        _checks.rate("momentum", self.momentum)
        _checks.flag("freeze_norm_scale", self.freeze_norm_scale)
        _checks.positive("norm_shift_rate", self.norm_shift_rate)
        _checks.positive("muon_rate", self.muon_rate)
        _checks.rate("muon_momentum", self.muon_momentum)
        _checks.non_negative_int("lookahead", self.lookahead)
        if self.norm_shift_rate != 1 and self.optimizer not in SGD_OPTIMIZERS:
            raise ValueError(
                f"`norm_shift_rate` needs an SGD optimizer ({', '.join(SGD_OPTIMIZERS)}), "
                f"got optimizer={self.optimizer!r}."
            )
        for milestone in self.milestones:
            if not _checks.rate("milestones", milestone) > 0:
                raise ValueError(f"`milestones` must lie in (0, 1), got {self.milestones!r}.")
        _checks.flag("decay_norm_and_bias", self.decay_norm_and_bias)
        _checks.rate("ema", self.ema)
        if self.flip is not None:
            _checks.choice("flip", self.flip, FLIPS)
        if self.translate is not None:
            _checks.non_negative_int("translate", self.translate)
        _checks.non_negative_int("cutout", self.cutout)
        _checks.choice("tta", self.tta, TTA_MODES)

    def for_examples(self, count: int) -> Recipe:
        """The recipe for a training set of `count` examples: with a `batch_fraction`, its
        batch size (and the batch its rate is given for) set by it.

        Example:
        >>> [RECIPES["wang2017"].for_examples(n).batch_size for n in (36, 270, 1000)]
        [3, 27, 64]
        """
        if not self.batch_fraction:
            return self
        batch = min(self.batch_size, max(1, int(self.batch_fraction * count)))
        return replace(self, batch_size=batch, reference_batch=batch, batch_fraction=0.0)


# airbench94's recipe in Keras's terms, for the speed family's head (logits x 1/9,
# max pooling). Its PyTorch SGD sums the loss over a batch of 1024 (lr 11.5/7851 per
# example: 1.5 on the mean) and decays through the momentum (0.0133 a step at the
# peak: 0.0089 decoupled); warm-up 23% from 0.2 of the peak, then down to 0.07;
# frozen batch-norm scales, shifts 64x faster; Lookahead every 5 steps; alternating
# flips; 6-view TTA.
_AIRBENCH = Recipe(
    optimizer="nesterov",
    learning_rate=1.5,
    reference_batch=1024,
    batch_size=1024,
    momentum=0.85,
    weight_decay=0.0089,
    schedule="onecycle",
    warmup_epochs=2.3,
    warmup_from=0.2,
    anneal_to=0.07,
    label_smoothing=0.2,
    decay_norm_and_bias=True,
    freeze_norm_scale=True,
    norm_shift_rate=64.0,
    lookahead=5,
    flip="alternate",
    translate=2,
    tta="flip_translate",
)

RECIPES: dict[str, Recipe] = {
    # He et al. 2016, CIFAR: SGD momentum 0.9, lr 0.1 @ 128, wd 1e-4, /10 at 50% and 75%.
    # Keras decays decoupled from the momentum (w -= lr * wd * w each step), the paper's
    # Caffe added wd * w to the gradient, which momentum 0.9 sums to 10x: 1e-3 here.
    "he2016": Recipe(optimizer="momentum", learning_rate=0.1, weight_decay=1e-3),
    # Short budgets: Nesterov, linear warm-up then cosine to zero, label smoothing.
    "fast": Recipe(
        optimizer="nesterov",
        learning_rate=0.2,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=0.3,
        label_smoothing=0.1,
    ),
    # Adaptive optimizer with decoupled weight decay (Loshchilov & Hutter, 2019).
    "adamw": Recipe(
        optimizer="adamw",
        learning_rate=2e-3,
        weight_decay=0.05,
        schedule="cosine",
        warmup_epochs=0.3,
        label_smoothing=0.1,
    ),
    # Time series of the UCR/UEA archive: tens to hundreds of series, so small batches (a
    # tenth of the series, at most 16, as the published recipe's tenth) and Adam (Wang et
    # al. 2017 train 1,500 epochs of Adam at 1e-3); a cosine schedule to zero in place of
    # their plateau halving; no flips or shifts.
    "series": Recipe(
        optimizer="adamw",
        learning_rate=1e-3,
        reference_batch=16,
        batch_size=16,
        batch_fraction=0.1,
        weight_decay=1e-2,
        schedule="cosine",
        warmup_epochs=1.0,
        label_smoothing=0.1,
    ),
    # The published time-series ResNet's, as the code of Ismail Fawaz et al. (2019) trains
    # Wang et al.'s network: Adam at 1e-3 for 1,500 epochs on batches of a tenth of the
    # series (at most 64), the rate halved after 50 epochs without a lower training loss
    # (down to 1e-4), the weights of the lowest training loss kept. Slower than `series`,
    # steadier on a few dozen series (docs/series.md).
    "wang2017": Recipe(
        optimizer="adam",
        learning_rate=1e-3,
        reference_batch=64,
        batch_size=64,
        batch_fraction=0.1,
        weight_decay=0.0,
        schedule="plateau",
        anneal_to=0.1,
        patience=50,
    ),
    # The CIFAR-10 speed records' recipe (Page's ResNet-9, airbench): large batches, a
    # one-cycle schedule, label smoothing 0.2, 2-pixel shifts and flips, flip TTA; their
    # weight decay 5e-4 (added to the gradient, summed 10x by momentum) is 5e-3 here.
    "fast_cifar": Recipe(
        optimizer="nesterov",
        learning_rate=0.1,
        batch_size=512,
        weight_decay=5e-3,
        schedule="onecycle",
        warmup_epochs=2.0,
        label_smoothing=0.2,
        translate=2,
        tta="flip",
    ),
    "airbench": _AIRBENCH,
    # `airbench` with airbench94_muon's optimizer (Jordan 2024: 94% in 8 epochs where
    # airbench94 takes 9.9): Muon for the convolution kernels at a peak of 0.24 (momentum
    # 0.6) on airbench's schedule, Nesterov SGD for the rest. Trained for 8 epochs here it
    # is 0.56 points above `airbench`'s 8 (docs/performance.md); airbench94_muon's own
    # batches of 2,000 and linear decay from the first step measured lower.
    "airbench_muon": replace(_AIRBENCH, optimizer="muon", muon_rate=0.24, muon_momentum=0.6),
}


def get_recipe(recipe: str | Recipe, **overrides) -> Recipe:
    """A named recipe (or a `Recipe`) with `overrides` applied (None values ignored).

    Example:
    >>> get_recipe("fast", batch_size=256).batch_size
    256
    """
    if isinstance(recipe, str):
        recipe = RECIPES[_checks.choice("recipe", recipe, RECIPES)]
    fields = [f.name for f in dataclasses.fields(Recipe)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"Recipe has no field {', '.join(map(repr, unknown))}; its fields: {', '.join(fields)}."
        )
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
