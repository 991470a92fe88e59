"""The copies of its best configuration that a search retrains: kept on disk as each one
finishes, so that a search killed while it trains them goes on from the copies kept on
`--resume` instead of training them again, and stopped where the budget ends when their
recipe needs no planned length."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import keras

from keras_residual._files import (
    atomic_path,
    read_json,
    remove_partial_files,
    write_text_atomically,
)

FOLDER = "copies"  # in a search's output folder, removed once the search has finished
RECORD = "copies.json"  # written after each copy's model: the copies it lists are whole


class KeptCopies:
    """The finished copies of trial `trial_id`'s configuration (`hyperparameters`), each
    retrained for `epochs` (or stopped sooner: the epochs each `trained`) with `recipe` (a
    name; None: the trials'), with the seconds each took; their models are
    `copies/copy_K.keras` in the search's folder `out`.

    Example:
    >>> import tempfile
    >>> kept = KeptCopies(Path(tempfile.mkdtemp()), "00", {"width": 8}, epochs=3)
    >>> kept.count, kept.matches("00", {"width": 8}), kept.matches("01", {"width": 8})
    (0, True, False)
    """

    def __init__(
        self,
        out: Path,
        trial_id: str,
        hyperparameters: dict,
        epochs: int,
        recipe: str | None = None,
        seconds: list[float] | None = None,
        trained: list[float] | None = None,
    ):
        self.folder, self.trial_id, self.epochs = Path(out) / FOLDER, trial_id, epochs
        self.recipe = recipe
        self.hyperparameters = json.loads(json.dumps(hyperparameters))  # as the record reads
        self.seconds, self.trained = list(seconds or []), list(trained or [])

    @classmethod
    def read(cls, out: Path) -> KeptCopies | None:
        """The copies a killed search in `out` kept (None if it kept none), once the files
        the kill left half-written are removed."""
        folder = Path(out) / FOLDER
        remove_partial_files(folder)
        if not (folder / RECORD).exists():
            return None
        record = read_json(folder / RECORD, "the retrained copies kept")
        return cls(out, **record)

    @property
    def count(self) -> int:
        return len(self.seconds)

    def matches(self, trial_id: str, hyperparameters: dict) -> bool:
        """Whether these are copies of this trial's configuration."""
        return (trial_id, json.loads(json.dumps(hyperparameters))) == (
            self.trial_id,
            self.hyperparameters,
        )

    def models(self) -> list[keras.Model]:
        """The kept copies, reloaded under `safe_mode` (uncompiled: they are only tested)."""
        return [
            keras.saving.load_model(self._path(k), safe_mode=True, compile=False)
            for k in range(self.count)
        ]

    def add(self, model: keras.Model, seconds: float, trained: float) -> None:
        """Keep `model` as the next copy, trained for `trained` epochs (a last one partial
        when paced to the time) in `seconds`: its
        file first, then the record that lists it, each written atomically."""
        with atomic_path(self._path(self.count)) as temporary:
            model.save(temporary)
        self.seconds.append(round(seconds, 3))
        self.trained.append(trained)
        record = {"trial_id": self.trial_id, "hyperparameters": self.hyperparameters}
        record |= {"epochs": self.epochs, "recipe": self.recipe}
        record |= {"seconds": self.seconds, "trained": self.trained}
        write_text_atomically(self.folder / RECORD, json.dumps(record, indent=2))

    def _path(self, k: int) -> Path:
        return self.folder / f"copy_{k}.keras"


def remove_copies(out: Path) -> None:
    """Delete the copies kept in the search folder `out`: its best model holds their
    average, or they are of a configuration it no longer retrains."""
    shutil.rmtree(Path(out) / FOLDER, ignore_errors=True)


class StopAtDeadline(keras.callbacks.Callback):
    """Ends training once the next epoch, as long as the longest so far plus a tenth,
    would pass `deadline` (a `time.monotonic()` time); `epochs` counts those trained. For
    recipes whose schedule needs no planned length (`UNPLANNED_SCHEDULES`).

    With `judge_after`, it also ends training after that many epochs if their pace (the
    first, which traces, left out) would not reach `least` epochs by the deadline, and
    says so in `gave_up`: the run was a measurement of its speed, not a model to keep.

    Example:
    >>> stop = StopAtDeadline(time.monotonic() + 3600, least=1350, judge_after=10)
    >>> stop.epochs, stop.gave_up
    (0, False)
    """

    def __init__(self, deadline: float, least: int = 0, judge_after: int | None = None):
        super().__init__()
        self.deadline, self.least, self.judge_after = deadline, least, judge_after
        self.epochs, self.longest, self.gave_up, self._paced = 0, 0.0, False, []

    def on_epoch_begin(self, epoch, logs=None):
        self._began = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        took = now - self._began
        self.epochs, self.longest = self.epochs + 1, max(self.longest, took)
        if self.epochs > 1:
            self._paced.append(took)
        if self.epochs == self.judge_after and self._paced:
            pace = sum(self._paced) / len(self._paced)
            if now + pace * (self.least - self.epochs) > self.deadline:
                self.gave_up = self.model.stop_training = True
        if now + 1.1 * self.longest > self.deadline:
            self.model.stop_training = True
