"""A time-budgeted search's plan: what a trial and the final retraining of a network cost,
from the trials already timed (and networks probed: a few steps timed), and whether a
candidate fits the time left."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from keras_residual._files import write_text_atomically

# A retraining that fills the time left plans on all but this share of it (after its test,
# estimated apart): an epoch of the retraining can run slower than the trial's timed steps.
# Measured on 2 cores, its epochs ran within 2% of the forecast (docs/search.md).
AUTO_MARGIN = 0.05
# A network refused on a forecast outside the networks timed is first timed for a few steps
# (probed) if it would fit were it this many times faster than forecast: seconds per FLOP
# fall with width (benchmarks/search_cost_model.py measures by how much), and below the
# smallest network timed the forecast is the smallest's own time.
PROBE_GAIN = 2.0
PROBE_FILE = "probe.json"  # a probed network's timing, beside its trial's trial.json


# The timings a record may lack (0 where missing), in `Timing`'s order.
_RECORDED_IF_ANY = ("validation_seconds", "epoch_overhead_seconds")


@dataclass(frozen=True)
class Timing:
    """A network's measured cost: seconds to start (tracing, the pipeline), per training
    image once running, per validation pass (one an epoch), and per epoch besides its
    steps and validation (starting the epoch's data, the callbacks: what epochs of a few
    steps, as on a small time-series set, mostly cost)."""

    overhead: float
    per_image: float
    validation: float = 0.0
    per_epoch: float = 0.0

    @classmethod
    def of(cls, trial) -> Timing | None:
        """A completed trial's timing, if it recorded one."""
        metrics = trial.metrics
        names = ("overhead_seconds", "seconds_per_image", *_RECORDED_IF_ANY)
        return cls.from_record(
            {name: metrics.get_last_value(name) for name in names if metrics.exists(name)}
        )

    @classmethod
    def from_record(cls, record: dict) -> Timing | None:
        """The timing in a trial's record (what `ResidualHyperModel.fit` returns, and the
        trial's metrics hold), if it has one.

        Example:
        >>> Timing.from_record({"overhead_seconds": 5.0, "seconds_per_image": 1e-3})
        Timing(overhead=5.0, per_image=0.001, validation=0.0, per_epoch=0.0)
        """
        if "seconds_per_image" not in record:
            return None
        return cls(
            record["overhead_seconds"],
            record["seconds_per_image"],
            *(record.get(name, 0.0) for name in _RECORDED_IF_ANY),
        )

    def faster(self, times: float) -> Timing:
        """This timing with its training and validation `times` as fast."""
        return replace(self, per_image=self.per_image / times, validation=self.validation / times)

    def epoch_seconds(self, images: int) -> float:
        """Seconds an epoch of `images` images takes, its validation pass included."""
        return self.per_image * images + self.validation + self.per_epoch

    def seconds(self, images: int, epochs: int, test_passes: float = 0.0) -> float:
        """Seconds to train `epochs` epochs of `images` images each, then to test it for
        as long as `test_passes` validation passes take."""
        return self.overhead + self.epoch_seconds(images) * epochs + self.validation * test_passes


def save_probe(path: str | os.PathLike, flops: float, timing: Timing) -> None:
    """Record a probed network's `timing` in `path` (a `PROBE_FILE`)."""
    write_text_atomically(path, json.dumps({"flops": flops, **asdict(timing)}))


def load_probe(path: str | os.PathLike) -> tuple[float, Timing] | None:
    """The FLOPs and `Timing` that `save_probe` recorded in `path`; None if unreadable."""
    try:
        record = json.loads(Path(path).read_text())
        return float(record.pop("flops")), Timing(**record)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _at(flops: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """`ys` at `flops`, interpolated between `xs`; below the smallest, the smallest's;
    above the largest, along the least-squares slope, but no steeper than in proportion to
    the FLOPs (the slope through the origin, the rule for a single point): two trials of
    almost the same FLOPs and noisy times would otherwise have any slope."""
    if flops <= xs[-1]:
        return float(np.interp(flops, xs, ys))
    proportional = ys[-1] / xs[-1]
    slope = np.clip(np.polyfit(xs, ys, 1)[0], 0.0, proportional) if len(xs) > 1 else proportional
    return float(ys[-1] + slope * (flops - xs[-1]))


@dataclass(frozen=True)
class CostModel:
    """The `Timing` of a network of given forward FLOPs per image, from timed trials: its
    seconds per image and per validation interpolated between the trials' FLOPs (along
    their least-squares slope above the largest, at most in proportion to the FLOPs; as
    the smallest's below it), with the longest start-up.

    Example:
    >>> cost = CostModel(flops=(1e6, 4e6), per_image=(1e-4, 3e-4), validation=(1, 1), overhead=2)
    >>> round(cost.timing(2.5e6).seconds(images=10_000, epochs=1), 1)
    5.0
    """

    flops: tuple[float, ...]  # increasing
    per_image: tuple[float, ...]
    validation: tuple[float, ...]
    overhead: float
    per_epoch: float = 0.0

    @classmethod
    def from_trials(cls, trials, probes: Iterable[tuple[float, Timing]] = ()) -> CostModel | None:
        """The model of the completed trials that recorded their timing, and of `probes`
        (FLOPs and `Timing` pairs); None if there are none."""
        timed = [
            (float(trial.metrics.get_last_value("flops")), timing)
            for trial in trials
            if trial.status == "COMPLETED"
            and trial.metrics.exists("flops")
            and (timing := Timing.of(trial)) is not None
        ]
        return cls.from_timings([*timed, *probes])

    @classmethod
    def from_timings(cls, timed: Iterable[tuple[float, Timing]]) -> CostModel | None:
        """The model of networks' (FLOPs, `Timing`) pairs, a network timed twice at its
        slower; None if there are none.

        Example:
        >>> CostModel.from_timings([(4e6, Timing(2, 3e-4)), (1e6, Timing(1, 1e-4))]).flops
        (1000000.0, 4000000.0)
        """
        timings, overheads, per_epoch = {}, [], []
        for flops, timing in timed:
            known = timings.get(float(flops), timing)
            timings[float(flops)] = max(known, timing, key=lambda t: t.per_image)
            overheads.append(timing.overhead)
            per_epoch.append(timing.per_epoch)
        if not timings:
            return None
        flops = tuple(sorted(timings))
        per_image = tuple(timings[f].per_image for f in flops)
        validation = tuple(timings[f].validation for f in flops)
        return cls(flops, per_image, validation, max(overheads), max(per_epoch))

    def timing(self, flops: float) -> Timing:
        """The estimated timing of a network of `flops` forward FLOPs per image."""
        xs = np.asarray(self.flops)
        return Timing(
            self.overhead,
            _at(flops, xs, np.asarray(self.per_image)),
            _at(flops, xs, np.asarray(self.validation)),
            self.per_epoch,
        )


@dataclass(frozen=True)
class TimeLimit:
    """What a trial must fit once its network is built: its own training for
    `trial_epochs` epochs of `trial_images`, then (should it turn out best) a retraining for
    `retrain_epochs` of `retrain_images`, or the retraining already `reserved` for the best
    so far, whichever is longer, all within `seconds`; a retraining's test costs
    `test_passes` validation passes. With `after` (`final_epochs="auto"`), the retraining
    runs in seconds of its own after the trials: the trial must fit `seconds` and its
    retraining all but `AUTO_MARGIN` of `after`. Sent with the trial to
    `ResidualHyperModel.fit`, which skips a network that does not fit before it trains,
    once timed for a few steps if the forecast extrapolates (`worth_probing`)."""

    seconds: float
    reserved: float
    trial_images: int
    trial_epochs: int
    retrain_images: int
    retrain_epochs: int
    cost: CostModel
    test_passes: float = 0.0
    after: float = 0.0
    probe_file: str | None = None  # where a probe of the trial's network records its timing

    def check(self, flops: float, timing: Timing | None = None) -> str | None:
        """Why a network of `flops` forward FLOPs per image does not fit, or None; at its
        measured `timing` if given, else at the cost model's forecast."""
        timing = timing or self.cost.timing(flops)
        trial = timing.seconds(self.trial_images, self.trial_epochs)
        retrain = timing.seconds(self.retrain_images, self.retrain_epochs, self.test_passes)
        retrain *= self.retrain_epochs > 0
        if self.after:  # the retraining has time of its own, after the trials'
            kept = (1 - AUTO_MARGIN) * self.after
            if retrain > kept:
                epochs = f"{self.retrain_epochs} epoch{'s' * (self.retrain_epochs != 1)}"
                return (
                    f"about {retrain:.0f} s to retrain for {epochs} and test: more than the "
                    f"{kept:.0f} s kept for it"
                )
            retrain = 0.0
        if trial + max(self.reserved, retrain) <= self.seconds:
            return None
        then = f" and about {retrain:.0f} s to retrain" if retrain else ""
        if self.reserved > retrain:
            then = f" with {self.reserved:.0f} s kept for the best so far's retraining"
        return f"about {trial:.0f} s to train{then}: more than the {self.seconds:.0f} s left"

    def covers(self, flops: float) -> bool:
        """Whether a network of `flops` lies within the networks timed: its forecast
        interpolates."""
        return self.cost.flops[0] <= flops <= self.cost.flops[-1]

    def worth_probing(self, flops: float) -> bool:
        """Whether a network of `flops` is forecast outside the networks timed (above the
        largest, or below the smallest: as costly as that) and would fit were it
        `PROBE_GAIN` times faster than forecast: worth timing a few steps of before `check`
        refuses it."""
        if self.covers(flops):
            return False
        return self.check(flops, self.cost.timing(flops).faster(PROBE_GAIN)) is None

    def probed(self, flops: float, per_image: float, seconds: float) -> tuple[Timing, TimeLimit]:
        """The timing of a network of `flops` probed at `per_image` seconds per training
        image (its validation scaled from the forecast's alike), recorded in `probe_file`,
        and the limit left once the probe's `seconds` are spent."""
        forecast = self.cost.timing(flops)
        scale = per_image / forecast.per_image
        timing = replace(forecast, per_image=per_image, validation=forecast.validation * scale)
        if self.probe_file:
            save_probe(self.probe_file, flops, timing)
        return timing, replace(self, seconds=self.seconds - seconds)


def scored(oracle) -> list:
    """`oracle`'s completed trials with a score, best first. (keras-tuner's
    `get_best_trials`, asked for more than have completed, goes on with the others: a
    trial skipped before it trained, untimed, would seem to fit any time.)"""
    ranked = oracle.get_best_trials(len(oracle.trials))
    return [t for t in ranked if t.status == "COMPLETED" and t.score is not None]


def smallest_budget(
    timing: Timing,
    trial_images: int,
    trial_epochs: int,
    retraining: Retraining | None,
    trial_share: float | None = None,
) -> float:
    """The least budget in which a network of `timing` trains a first trial (`trial_epochs`
    of `trial_images`) and then its shortest `retraining` (None: none): in turn, or with
    `trial_share` (`final_epochs="auto"`), each in its share, the retraining's less
    `AUTO_MARGIN`.

    Example:
    >>> timing = Timing(overhead=5, per_image=1e-3)
    >>> smallest_budget(timing, 1_000, 1, Retraining(2, 10_000))
    31.0
    >>> round(smallest_budget(timing, 1_000, 1, Retraining(2, 10_000), trial_share=0.5), 1)
    52.6
    """
    trial = timing.seconds(trial_images, trial_epochs)
    retrain = 0.0
    if retraining is not None:
        retrain = timing.seconds(retraining.images, retraining.final_epochs, retraining.test_passes)
    if trial_share is None:
        return trial + retrain
    return max(trial / trial_share, retrain / ((1 - trial_share) * (1 - AUTO_MARGIN)))


class Retraining:
    """Seconds to retrain a trial's network for `final_epochs` on `images` training
    images and then test it, from the trial's own seconds per epoch and image and per
    validation pass (the test costs `test_passes` of those: its images times the test-time
    augmentation's views, over the validation images), and which trial to retrain when the
    time left is short.

    Called as `retraining(oracle, seconds_left)` by the tuners: the time to keep for
    the retraining of `pick(oracle, seconds_left)` (infinite when none fits). The time
    left extends a retraining to `most_epochs` at most (None: as many as fit)."""

    def __init__(
        self,
        final_epochs: int,
        images: int,
        test_passes: float = 0.0,
        most_epochs: int | None = None,
    ):
        self.final_epochs, self.images, self.test_passes = final_epochs, images, test_passes
        self.most_epochs = most_epochs

    def at_least(self, epochs: int) -> Retraining:
        """This retraining, for at least `epochs`."""
        final = max(self.final_epochs, epochs)
        return Retraining(final, self.images, self.test_passes, self.most_epochs)

    def seconds(self, trial, epochs: int | None = None) -> float:
        """The trial's `Timing` for the retraining's images and `epochs` (default
        `final_epochs`) and the test; 0 for a trial that did not record one."""
        timing = Timing.of(trial)
        epochs = self.final_epochs if epochs is None else epochs
        return 0.0 if timing is None else timing.seconds(self.images, epochs, self.test_passes)

    def test_seconds(self, trial) -> float:
        """The part of `seconds` that tests the retrained network."""
        timing = Timing.of(trial)
        return 0.0 if timing is None else timing.validation * self.test_passes

    def epochs_within(self, trial, seconds: float) -> int:
        """The most epochs (at least `final_epochs`, at most `most_epochs`) of the trial's
        retraining that fit `seconds` with its test, `AUTO_MARGIN` of them kept for slower
        epochs (`epochs_at`, at the trial's timing)."""
        return self.epochs_at(Timing.of(trial), seconds)

    def epochs_at(self, timing: Timing | None, seconds: float) -> int:
        """`epochs_within` for a network of `timing` (None: nothing recorded to plan with).

        Example:
        >>> Retraining(2, 1_000).epochs_at(Timing(overhead=5, per_image=1e-3), 100.0)
        90
        """
        epoch = 0.0 if timing is None else timing.epoch_seconds(self.images)
        if epoch <= 0:  # nothing recorded to plan with
            return self.final_epochs
        start = timing.seconds(self.images, 0, self.test_passes)  # starting, and testing
        fit = math.floor(((1 - AUTO_MARGIN) * seconds - start) / epoch)
        if self.most_epochs is not None:
            fit = min(fit, self.most_epochs)
        return max(self.final_epochs, fit)

    def to_ceiling(self, oracle) -> float:
        """Seconds the best completed trial's retraining takes for `most_epochs`, tested,
        with `AUTO_MARGIN` kept as `epochs_within` keeps it; 0 without a ceiling or a
        trial."""
        best = self.pick(oracle)
        if self.most_epochs is None or best is None:
            return 0.0
        return self.seconds(best, self.most_epochs) / (1 - AUTO_MARGIN)

    def pick(self, oracle, seconds_left: float | None = None):
        """The best completed trial whose retraining fits `seconds_left` (None: the best),
        or None."""
        return next((t for t in scored(oracle) if self.fits(t, seconds_left)), None)

    def fits(self, trial, seconds_left: float | None) -> bool:
        """Whether the trial's shortest retraining fits `seconds_left` (None: always)."""
        return seconds_left is None or self.seconds(trial) <= seconds_left

    def __call__(self, oracle, seconds_left: float) -> float:
        if not scored(oracle):
            return 0.0
        pick = self.pick(oracle, seconds_left)
        return math.inf if pick is None else self.seconds(pick)
