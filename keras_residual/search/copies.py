"""The copies of its best configuration that a search retrains, kept on disk as each one
finishes: a search killed while it trains them goes on from the copies kept on `--resume`
instead of training them again."""

from __future__ import annotations

import json
import shutil
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
    retrained for `epochs`, with the seconds each took; their models are
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
        seconds: list[float] | None = None,
    ):
        self.folder, self.trial_id, self.epochs = Path(out) / FOLDER, trial_id, epochs
        self.hyperparameters = json.loads(json.dumps(hyperparameters))  # as the record reads
        self.seconds = list(seconds or [])

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

    def add(self, model: keras.Model, seconds: float) -> None:
        """Keep `model` as the next copy, trained in `seconds`: its file first, then the
        record that lists it, each written atomically."""
        with atomic_path(self._path(self.count)) as temporary:
            model.save(temporary)
        self.seconds.append(round(seconds, 3))
        record = {"trial_id": self.trial_id, "hyperparameters": self.hyperparameters}
        record |= {"epochs": self.epochs, "seconds": self.seconds}
        write_text_atomically(self.folder / RECORD, json.dumps(record, indent=2))

    def _path(self, k: int) -> Path:
        return self.folder / f"copy_{k}.keras"


def remove_copies(out: Path) -> None:
    """Delete the copies kept in the search folder `out`: its best model holds their
    average, or they are of a configuration it no longer retrains."""
    shutil.rmtree(Path(out) / FOLDER, ignore_errors=True)
