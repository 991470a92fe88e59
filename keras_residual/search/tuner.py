"""keras-tuner tuners that record each trial's size, cost and timing and honour a time budget."""

from __future__ import annotations

import time
from collections.abc import Callable

import keras_tuner


class BudgetSpent(Exception):
    """Raised before a new trial is created once the wall-clock budget is spent."""


class _RecordingTuner:
    """Mixin for a keras-tuner `Tuner`: records params, FLOPs and timings per trial,
    stops launching trials once `time_budget` seconds have passed and calls
    `on_trial_done(trial)` after every trial."""

    def __init__(
        self,
        *args,
        time_budget: float | None = None,
        on_trial_done: Callable | None = None,
        **kwargs,
    ):
        self.time_budget = time_budget
        self.on_trial_done = on_trial_done
        self._search_started = time.monotonic()
        super().__init__(*args, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        started = time.time()
        results = super().run_trial(trial, *args, **kwargs)
        record = results[-1] if isinstance(results, list) else results
        keys = ("val_accuracy", "val_loss", "params", "flops", "fit_seconds")
        metrics = {k: record[k] for k in keys}
        metrics |= {
            "trial_seconds": time.time() - started,
            "started_at": started,
            "finished_at": time.time(),
        }
        # One step past the last epoch, so the record never averages into an epoch's value.
        self.oracle.update_trial(trial.trial_id, metrics, step=record["next_epoch"])
        return results

    def pre_create_trial(self):
        spent = time.monotonic() - self._search_started
        if self.time_budget is not None and spent >= self.time_budget:
            raise BudgetSpent(f"time budget of {self.time_budget:.0f} s spent")

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.on_trial_done is not None:
            self.on_trial_done(trial)

    def search(self, *args, **kwargs):
        self._search_started = time.monotonic()
        try:
            super().search(*args, **kwargs)
        except BudgetSpent as spent:
            print(f"Search stopped: {spent}; no new trials launched.")
            self.on_search_end()


class RandomSearch(_RecordingTuner, keras_tuner.RandomSearch):
    """`keras_tuner.RandomSearch` that records trial size, cost and timing."""


class BayesianOptimization(_RecordingTuner, keras_tuner.BayesianOptimization):
    """`keras_tuner.BayesianOptimization` that records trial size, cost and timing."""


class Hyperband(_RecordingTuner, keras_tuner.Hyperband):
    """`keras_tuner.Hyperband` that records trial size, cost and timing."""


TUNERS = {"random": RandomSearch, "bayesian": BayesianOptimization, "hyperband": Hyperband}
