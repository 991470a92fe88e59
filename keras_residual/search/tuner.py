"""keras-tuner tuners that record each trial's size, cost and timing and honour a time budget."""

from __future__ import annotations

import glob
import json
import math
import os
import time
import zlib
from collections.abc import Callable

import keras
import keras_tuner

from keras_residual import _thirdparty
from keras_residual._files import write_text_atomically
from keras_residual.search.budget import (
    PROBE_FILE,
    CostModel,
    Retraining,
    TimeLimit,
    load_probe,
)
from keras_residual.search.incumbent import Incumbent
from keras_residual.search.isolation import TrialProcesses
from keras_residual.search.results import SPEC_FILE
from keras_residual.search.state import HYPERPARAMETERS_FILE
from keras_residual.search.trials import HALFWAY, STOPPED

_thirdparty.make_keras_tuner_writes_atomic()


class TrialsStopped(Exception):
    """Raised before a new trial is created once no more may start: the wall-clock budget
    is spent, or the trials stopped improving on the best (`patience`)."""


class _RecordingTuner:
    """Mixin for a keras-tuner `Tuner`: records params, FLOPs and timings per trial,
    stops launching trials once `time_budget` seconds have passed and calls
    `on_trial_done(trial)` after every trial.

    With `isolate_trials` (the default) trials train in a trial process, replaced once it
    has grown `TrialProcesses.memory_slack_mib`, so memory stays bounded over any number of
    trials and a crashed trial fails alone; the hypermodel and the search's arguments must
    then be picklable. `isolate_trials=False` trains in this process (for a debugger, say).
    No trial starts that might not end within `time_budget`, keeping back the time of the
    final `retraining` (a `Retraining`) of the best trial so far, or, given a
    `retraining_budget` (seconds of its own after `time_budget`), skipping a network whose
    retraining would not fit that, and stopping the trials early where the best trial's
    retraining at its epoch ceiling needs more. A hypermodel that takes a `time_limit`
    (`ResidualHyperModel`) gets one with each trial (a `TimeLimit`, from the seconds per
    image of the trials so far and of the networks probed) and skips a network that could
    not train, and then be retrained, in the time left; when no trial so far could be
    retrained in it, the search goes on with networks that fit their own retraining.

    With `trial_seconds`, each trial trains for as many epochs as fit in that long (at
    least `epochs`), where the hypermodel takes it (`ResidualHyperModel`): trials then
    compare networks at equal time. Hyperband's trials keep their rungs' epochs.

    With `patience`, no trial starts once that many have completed since the best (by
    score; the first of equals) without scoring higher, or, while the best is the
    `incumbent`, without replacing it (its rule on the `validated` images the scores were
    measured on): exploring has stopped paying, and a retraining planned for the time left
    gets the rest. Hyperband's rungs ignore it.

    `seed` (default 0) fixes the sequence of trials; unlike in keras-tuner, 0 is a seed
    like any other. `first_values` (hyperparameter values: a known network as a point of
    the space, a preset of `ResidualHyperModel.baselines` or the smallest network) are the
    first trial's; the oracle draws the others as it would (Hyperband's brackets take
    none). With `trial_seconds` and a `retraining_budget`, a preset is the `incumbent`: a
    network cheaper than it is skipped before it trains, as its lead in a trial of equal
    time would not last over the retraining (`Incumbent`). Each equal-time trial then
    trains an even count of epochs and records its score at the end of half of them; one
    behind the preset's at the same point by more than the noise stops there
    (`Incumbent.behind_at_half`), and the time it would have taken goes to the trials after
    it and the retraining.
    """

    def __init__(
        self,
        *args,
        time_budget: float | None = None,
        trial_seconds: float | None = None,
        on_trial_done: Callable | None = None,
        isolate_trials: bool = True,
        retraining: Retraining | None = None,
        retraining_budget: float | None = None,
        first_values: dict | None = None,
        patience: int | None = None,
        validated: int | None = None,
        **kwargs,
    ):
        self.time_budget, self.trial_seconds = time_budget, trial_seconds
        self.patience, self.validated = patience, validated
        self.retraining, self.retraining_budget = retraining, retraining_budget
        self._epochs = 1
        self.on_trial_done = on_trial_done
        self._processes = TrialProcesses() if isolate_trials else None
        self._seed = kwargs.pop("seed", None) or 0
        self._search_started = time.monotonic()
        self.stopped_early = False
        # keras-tuner reads a seed of 0 (or None) as "draw one at random": shift by one so
        # every seed, 0 included, gives the same sequence of trials on every run.
        super().__init__(*args, seed=self._seed + 1, **kwargs)
        # The values the first trial takes, or None: a distributed worker's oracle is
        # remote, and Hyperband's brackets draw their own.
        takes = isinstance(self.oracle, keras_tuner.Oracle) and not isinstance(
            self.oracle, keras_tuner.oracles.HyperbandOracle
        )
        self.first_values = first_values if takes else None
        if self.first_values:
            _start_with(self.oracle, self.first_values)

    def _build_and_fit_model(self, trial, *args, **kwargs):
        if self._processes is None:
            return super()._build_and_fit_model(trial, *args, **kwargs)
        # keras-tuner's own callbacks hold the tuner; the child makes its own checkpointer.
        kwargs["callbacks"] = [
            c for c in kwargs.get("callbacks", []) if not _thirdparty.is_tuner_callback(c)
        ]
        hp = trial.hyperparameters
        previous = hp.values.get("tuner/trial_id")  # Hyperband continues an earlier trial
        job = {
            "hypermodel": self.hypermodel,
            "hyperparameters": hp.get_config(),
            "args": args,
            "kwargs": kwargs,
            "objective": self.oracle.objective,
            "checkpoint": _thirdparty.checkpoint_path(self, trial.trial_id),
            "build_config": _thirdparty.build_config_path(self, trial.trial_id),
            "initial_weights": previous and _thirdparty.checkpoint_path(self, previous),
            "seed": (self._seed + zlib.crc32(trial.trial_id.encode())) % 2**31,
            "dtype_policy": keras.config.dtype_policy().name,
        }
        # The heartbeat tells a distributed chief that this worker is alive.
        results = self._processes.run(job, heartbeat=lambda: self.oracle.get_trial(trial.trial_id))
        _thirdparty.validate_trial_results(results, self.oracle.objective, "HyperModel.fit()")
        return results

    def run_trial(self, trial, *args, **kwargs):
        started = time.time()
        limit = self.time_limit(trial)
        if limit is not None:
            kwargs["time_limit"] = limit
        if self._equal_time(trial):
            kwargs["trial_seconds"] = self.trial_seconds
            kwargs["halving"] = self._preset_first() is not None
        incumbent = self.incumbent()  # its trial completed: this is another
        if incumbent is not None:
            kwargs["incumbent"] = incumbent
        folder = self.get_trial_dir(trial.trial_id)
        # The trial's values, to rerun it if keras-tuner's trial.json is ever damaged.
        hyperparameters = json.dumps(trial.hyperparameters.get_config())
        write_text_atomically(os.path.join(folder, HYPERPARAMETERS_FILE), hyperparameters)
        make_spec = getattr(self.hypermodel, "spec", None)
        if make_spec is not None:  # the architecture as a value, for the results rows
            spec = make_spec(trial.hyperparameters).to_dict()
            write_text_atomically(os.path.join(folder, SPEC_FILE), json.dumps(spec, indent=2))
        results = super().run_trial(trial, *args, **kwargs)
        record = results[-1] if isinstance(results, list) else results
        keys = ("val_accuracy", "val_loss", "params", "flops", "fit_seconds")
        metrics = {k: record[k] for k in keys}
        # The trial's fidelity: epochs its network trained in all, and on how many images.
        metrics["epochs"] = record["next_epoch"]
        timing = (
            "seconds_per_image",
            "validation_seconds",
            "epoch_overhead_seconds",
            "overhead_seconds",
        )
        for name in ("train_examples", *timing, HALFWAY, STOPPED):
            if record.get(name) is not None:
                metrics[name] = record[name]
        metrics |= {
            "trial_seconds": time.time() - started,
            "started_at": started,
            "finished_at": time.time(),
        }
        # One step past the last epoch, so the record never averages into an epoch's value.
        self.oracle.update_trial(trial.trial_id, metrics, step=record["next_epoch"])
        return results

    def _seconds_left(self) -> float:
        return self.time_budget - (time.monotonic() - self._search_started)

    def _reserved(self, seconds_left: float) -> float:
        """Seconds kept for the final retraining of the best trial whose retraining fits;
        when none fits, none where each candidate is checked against its own retraining
        once built (a quicker network may yet fit), else all (no trial may start). A
        retraining with time of its own (`retraining_budget`) gets from the trials what
        the best trial's retraining at its ceiling (`most_epochs`) needs beyond that."""
        if self.retraining is None:
            return 0.0
        if self.retraining_budget is not None:
            return max(0.0, self.retraining.to_ceiling(self.oracle) - self.retraining_budget)
        reserved = self.retraining(self.oracle, seconds_left)
        return 0.0 if math.isinf(reserved) and self._checks_candidates() else reserved

    def pre_create_trial(self):
        stale = self._since_best()
        if stale:
            raise TrialsStopped(stale)
        if self.time_budget is None:
            return
        left = self._seconds_left()
        if left <= 0:
            raise TrialsStopped(f"time budget of {self.time_budget:.0f} s spent")
        trial, reserved = self.next_trial_seconds(), self._reserved(left)
        if trial + reserved > left:
            final = f" and {reserved:.0f} s kept for the final retraining" if reserved else ""
            if math.isinf(reserved):
                final = " and the final retraining of any trial so far"
            which = "quickest" if self._checks_candidates() else "slowest"
            raise TrialsStopped(
                f"{left:.0f} s of the {self.time_budget:.0f} s budget left: not enough for "
                f"another trial ({trial:.0f} s, as the {which} so far){final}"
            )

    def _since_best(self) -> str | None:
        """Why no trial should start for want of progress: the last `patience` completed
        trials (in the order they started) scored no higher than the best before them, or,
        while the best is the `incumbent`, could not replace it (`Incumbent.kept_over` on
        the `validated` images); None while they did, and without `patience` or under
        Hyperband."""
        if not self.patience or isinstance(self.oracle, keras_tuner.oracles.HyperbandOracle):
            return None
        completed = [t for t in self._completed() if t.score is not None]
        completed.sort(key=lambda t: t.metrics.get_last_value("started_at"))
        if not completed:
            return None
        incumbent, best, since = self.incumbent(), completed[0], 0

        def held(trial) -> bool:  # the best is still the preset the search started from
            return incumbent is not None and trial.trial_id == incumbent.trial_id

        for trial in completed[1:]:
            flops = trial.metrics.get_last_value("flops")
            if trial.score > best.score and not (
                held(best) and incumbent.kept_over(trial.score, flops, self.validated)
            ):
                best, since = trial, 0
            else:
                since += 1
        if since < self.patience:
            return None
        trials = "trial" if since == 1 else "trials"
        if held(best):
            return (
                f"{since} {trials} since trial {best.trial_id}, the {incumbent.name} preset "
                f"the search started from, could not replace it (patience {self.patience})"
            )
        return (
            f"{since} {trials} since trial {best.trial_id} scored no higher than its "
            f"{best.score:.3f} (patience {self.patience})"
        )

    def incumbent(self) -> Incumbent | None:
        """The preset the search started from, as its first trial scored it, where the
        pick is held to `Incumbent`'s rule: a search of equal-time trials (`trial_seconds`;
        not Hyperband's) whose retraining gets the time they leave (`retraining_budget`),
        whose first trial trained a preset of the space (`ResidualHyperModel.preset_name`)
        and completed; else None."""
        preset = self._preset_first()
        if preset is None:
            return None
        first, name = preset
        if first.status != "COMPLETED" or first.score is None:
            return None
        flops = first.metrics.get_last_value("flops")
        halfway = first.metrics.get_last_value(HALFWAY) if first.metrics.exists(HALFWAY) else None
        return Incumbent(name, first.trial_id, first.score, flops, halfway)

    def _preset_first(self) -> tuple | None:
        """The search's first trial and the name of the preset it trains where that preset
        holds the pick (`_held`), or None: not held, no trial yet, or a first trial that is
        not a preset of the space (none fit the budget)."""
        trials = getattr(self.oracle, "trials", {})
        if not self._held() or not trials:
            return None
        first = trials[min(trials)]
        name = self.hypermodel.preset_name(first.hyperparameters.values)
        return None if name is None else (first, name)

    def _held(self) -> bool:
        """Whether a preset first trial would hold the pick (`incumbent`): trials of equal
        time (not Hyperband's) whose retraining gets the time they leave, of a hypermodel
        that names its presets."""
        hyperband = isinstance(self.oracle, keras_tuner.oracles.HyperbandOracle)
        named = getattr(self.hypermodel, "preset_name", None) is not None
        return (
            bool(self.trial_seconds)
            and self.retraining_budget is not None
            and named
            and not hyperband
        )

    def _equal_time(self, trial) -> bool:
        """Whether `trial` trains for `trial_seconds`: one not of a Hyperband rung, of a
        hypermodel that plans its epochs by time."""
        rung = "tuner/epochs" in trial.hyperparameters.values
        return bool(self.trial_seconds) and not rung and self._checks_candidates()

    def _checks_candidates(self) -> bool:
        return bool(getattr(self.hypermodel, "takes_time_limit", False))

    def _completed(self) -> list:
        trials = getattr(self.oracle, "trials", {})  # a distributed worker's oracle is remote
        return [
            t
            for t in trials.values()
            if t.status == "COMPLETED" and t.metrics.exists("trial_seconds")
        ]

    def next_trial_seconds(self) -> float:
        """The next trial's seconds (0 before any trial ended): at most, the slowest
        seconds per epoch so far times the most epochs a trial can train here; at least,
        when each candidate's own time is checked once it is built (`time_limit`), the
        quickest training (`fit_seconds`: a trial process's start-up, which the first
        trial pays, and the build are left out) times the fewest, and no less than
        `trial_seconds` where trials train that long."""
        hyperband_epochs = getattr(self.oracle, "max_epochs", None)
        if self._checks_candidates():
            fits = [self._per_epoch(t, "fit_seconds") for t in self._completed()]
            quickest = min(fits, default=0.0) * (1 if hyperband_epochs else self._epochs)
            equal_time = 0.0 if hyperband_epochs else self.trial_seconds or 0.0
            return max(quickest, equal_time if fits else 0.0)
        trials = [self._per_epoch(t, "trial_seconds") for t in self._completed()]
        return max(trials, default=0.0) * (hyperband_epochs or self._epochs)

    @staticmethod
    def _per_epoch(trial, seconds: str) -> float:
        return trial.metrics.get_last_value(seconds) / epochs_trained(trial)

    def time_limit(self, trial) -> TimeLimit | None:
        """The `TimeLimit` `trial` must fit, or None: no budget, a hypermodel that takes
        none, or no trial timed yet."""
        if self.time_budget is None or not self._checks_candidates():
            return None
        timed = [t for t in self._completed() if t.metrics.exists("train_examples")]
        if not timed:
            return None
        probes = glob.glob(os.path.join(self.project_dir, "trial_*", PROBE_FILE))
        cost = CostModel.from_trials(timed, filter(None, map(load_probe, probes)))
        if cost is None:
            return None
        # A trial's images: the most any trained (an equal-time trial may train fewer, and
        # replaces them with its own plan).
        images = max(t.metrics.get_last_value("train_examples") for t in timed)
        values = trial.hyperparameters.values  # Hyperband's trials say their epochs
        epochs = int(values.get("tuner/epochs") or self._epochs)
        start = int(values.get("tuner/initial_epoch") or 0)
        left = self._seconds_left()
        return TimeLimit(
            seconds=left,
            reserved=self._reserved(left),
            trial_images=int(images),
            trial_epochs=max(1, epochs - start),
            retrain_images=self.retraining.images if self.retraining else 0,
            retrain_epochs=self.retraining.final_epochs if self.retraining else 0,
            cost=cost,
            test_passes=self.retraining.test_passes if self.retraining else 0.0,
            after=self.retraining_budget or 0.0,
            probe_file=os.path.join(self.get_trial_dir(trial.trial_id), PROBE_FILE),
        )

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.on_trial_done is not None:
            self.on_trial_done(trial)

    def search(self, *args, **kwargs):
        self._search_started = time.monotonic()
        self._epochs = kwargs.get("epochs") or 1
        try:
            with _thirdparty.failed_trials_untraced():
                super().search(*args, **kwargs)
        except TrialsStopped as why:
            self.stopped_early = True
            print(f"Search stopped: {why}; no new trials launched.")
            self.on_search_end()
        finally:
            if self._processes is not None:
                self._processes.close()


def _start_with(oracle: keras_tuner.Oracle, values: dict) -> None:
    """Make `oracle`'s first trial take `values`; later ones (and those of a resumed search,
    whose oracle has trials) are the oracle's own."""
    populate = oracle.populate_space

    def populate_space(trial_id):
        if oracle.trials:
            return populate(trial_id)
        return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": dict(values)}

    oracle.populate_space = populate_space


def epochs_trained(trial) -> int:
    """Epochs a finished trial trained itself (Hyperband's continue an earlier one)."""
    values = trial.hyperparameters.values
    total = trial.metrics.get_last_value("epochs") if trial.metrics.exists("epochs") else None
    total = total or values.get("tuner/epochs") or 1
    return max(1, int(total) - int(values.get("tuner/initial_epoch") or 0))


class RandomSearch(_RecordingTuner, keras_tuner.RandomSearch):
    """`keras_tuner.RandomSearch` that records trial size, cost and timing."""


class BayesianOptimization(_RecordingTuner, keras_tuner.BayesianOptimization):
    """`keras_tuner.BayesianOptimization` that records trial size, cost and timing."""


class Hyperband(_RecordingTuner, keras_tuner.Hyperband):
    """`keras_tuner.Hyperband` that records trial size, cost and timing."""


TUNERS = {"random": RandomSearch, "bayesian": BayesianOptimization, "hyperband": Hyperband}
