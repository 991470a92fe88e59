"""The known network a search starts from, and when another trial's lead is evidence enough
to retrain that one instead.

A search of equal-time trials whose retraining gets the time the trials leave
(`trial_seconds` with `final_epochs="auto"`) retrains its pick for many times a trial's
length. A trial's lead is measured at the trial's length, and at equal time a cheaper
network trains more epochs and leads, while over the retraining's longer time the costlier
one catches up and passes it (on CIFAR-10 a ResNet-6 at width 32 scored 0.865 in 150 s
against `fast_cifar_m`'s 0.705, and tested at 90.02% against 92.38% after an hour). So a
trial replaces the known network only where its lead is one the trials' bias cannot have
made: ahead by more than the validation split's noise, with a network at least as costly.
A cheaper network cannot replace it, whatever it scores, and is skipped before it trains.
And a trial that, halfway through, is behind the known network halfway through its own trial
by more than that noise (both at the same point of schedules planned over the same time)
stops there: the time its second half would take goes to the retraining.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def noise_band(score: float, validated: int | None) -> float:
    """Two standard errors of an accuracy `score` measured on `validated` images (0
    without them): a difference smaller than this is the validation split's noise.

    Example:
    >>> round(noise_band(0.45, 3000), 4)  # a score of 0.45 on 3,000 images
    0.0182
    """
    if not validated:
        return 0.0
    return 2 * math.sqrt(max(0.0, score * (1 - score)) / validated)


@dataclass(frozen=True)
class Incumbent:
    """The preset a search of equal-time trials started from
    (`ResidualHyperModel.baselines`), as its first trial scored it: `name`, `trial_id`,
    `score`, forward `flops` per image and the score `halfway` through its trial (None
    where not measured).

    Example:
    >>> known = Incumbent("fast_cifar_s", "00", 0.59, 188e6)
    >>> known.cannot_replace(95e6)[:58]
    'a network cheaper than the fast_cifar_s preset (trial 00: '
    >>> known.kept_over(0.70, 484e6, validated=3000) is None  # ahead, and costlier
    True
    >>> known.kept_over(0.60, 484e6, validated=3000)[:48]
    "not above the preset's 0.5900 by more than 0.018"
    >>> halved = Incumbent("fast_cifar_s", "00", 0.59, 188e6, halfway=0.41)
    >>> halved.behind_at_half(0.40, validated=3000) is None  # within the noise: goes on
    True
    >>> halved.behind_at_half(0.30, validated=3000)[:50]
    "0.3000 against the fast_cifar_s preset's 0.4100 at"
    """

    name: str
    trial_id: str
    score: float
    flops: float
    halfway: float | None = None

    def behind_at_half(self, score: float, validated: int | None) -> str | None:
        """Why a trial that scored `score` halfway through stops there: behind the
        preset's score halfway through its trial by more than the noise on `validated`
        images; None where it goes on (or no halfway score of the preset is known)."""
        if self.halfway is None:
            return None
        band = noise_band(max(score, self.halfway), validated)
        if self.halfway - score <= band:
            return None
        return (
            f"{score:.4f} against the {self.name} preset's {self.halfway:.4f} at the same "
            f"point of its trial, behind by more than {band:.3f}"
            + (f" (two standard errors on {validated:,} validation images)" if band else "")
        )

    def cannot_replace(self, flops: float) -> str | None:
        """Why a network of `flops` could not replace the preset whatever it scored (it
        is cheaper), or None."""
        if flops >= self.flops:
            return None
        return (
            f"a network cheaper than the {self.name} preset (trial {self.trial_id}: "
            f"{flops / 1e6:,.0f} against {self.flops / 1e6:,.0f} MFLOPs an image), whose lead "
            "in a trial of equal time would not last over the retraining's longer time"
        )

    def kept_over(self, score: float, flops: float, validated: int | None) -> str | None:
        """Why the preset stays over a trial that scored `score` with a network of
        `flops`, or None where that trial replaces it: ahead by more than the noise on
        `validated` images, with a network at least as costly."""
        why = self.cannot_replace(flops)
        if why:
            return why
        band = noise_band(max(score, self.score), validated)
        if score - self.score > band:
            return None
        if not band:
            return f"no higher than the preset's {self.score:.4f}"
        return (
            f"not above the preset's {self.score:.4f} by more than {band:.3f}, two standard "
            f"errors on {validated:,} validation images"
        )
