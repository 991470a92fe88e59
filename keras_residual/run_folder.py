"""A training run's folder: claimed (never another run's, never rewound), and its state
kept so that a kill at any moment loses no finished epoch (docs/reliability.md)."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import keras

from keras_residual._files import (
    atomic_path,
    read_json,
    remove_partial_files,
    write_text_atomically,
)
from keras_residual.recipes import Recipe

RUN_FILE = "run.json"  # the model and recipe of a train() run, checked on resume


def _architecture(model: keras.Model) -> dict:
    """What identifies a model's architecture for resuming: its name and layers."""
    layers = [[type(layer).__name__, layer.count_params()] for layer in model.layers]
    return {"model": model.name, "layers": layers}


# What a train() run writes into its folder (`--overwrite` removes these, nothing else).
RUN_FILES = (
    RUN_FILE,
    "recipe.json",
    "spec.json",
    "log.csv",
    "best_model.keras",
    "last_model.keras",
)
RUN_FOLDERS = ("backup", "tensorboard")
SEARCH_FILES = ("search.json", "tuner")  # a search's folder: never a train() run's


class RunFinished(ValueError):
    """`resume` of a run that has trained every epoch asked for; the message says how to
    train it longer."""


def claim_run_folder(
    out_dir,
    model: keras.Model,
    recipe: Recipe,
    epochs: int,
    resume: bool,
    overwrite: bool,
    seconds: float | None = None,
) -> Path:
    """Make `out_dir` this run's folder and return it (`RunState` restores its last epoch);
    `seconds`: the time the run is paced to, recorded.

    Refuses (changing nothing) a folder that holds a search, another run without
    `overwrite` or `resume`, or on resume a different model or recipe, a run paced to a
    time, or a run that has already trained `epochs`."""
    out = Path(out_dir)
    run = {"architecture": _architecture(model), "recipe": asdict(recipe), "epochs": epochs}
    if seconds is not None:
        run["seconds"] = seconds
    run = json.loads(json.dumps(run))  # as it reads back from run.json: lists for tuples
    if any((out / name).exists() for name in SEARCH_FILES):
        raise FileExistsError(
            f"`out_dir` (--out) {out} holds a search, not a training run: choose another folder."
        )
    held = [name for name in (*RUN_FILES, *RUN_FOLDERS) if (out / name).exists()]
    done = committed_epoch(out)["epoch"]
    if held and not resume:
        if not overwrite:
            what = f"{done} epoch{'s' * (done != 1)} trained" if done else "no epoch finished"
            raise FileExistsError(
                f"`out_dir` (--out) {out} holds another run ({what}): pass resume=True "
                "(--resume) to continue it, overwrite=True (--overwrite) to replace it, or "
                "choose another folder."
            )
        for name in held:
            (shutil.rmtree if (out / name).is_dir() else os.remove)(out / name)
    spec = getattr(model, "spec", None)  # a model build_network made knows its spec
    if spec is not None:
        run["spec"] = json.loads(json.dumps(spec.to_dict()))
    if resume and (out / RUN_FILE).exists():
        previous = read_json(out / RUN_FILE, "the run's model and recipe")
        if previous.get("seconds") is not None:
            raise ValueError(
                f"{out} holds a run paced to {previous['seconds']:.0f} s: its schedule "
                "followed the clock, so it does not resume. Its best model is "
                f"{out / 'best_model.keras'}; pass --overwrite to train it again."
            )
        same = previous.get("spec", run.get("spec")) == run.get("spec") if spec else True
        if previous["architecture"] != run["architecture"] or not same:
            raise ValueError(
                f"{out} holds a run of model {previous['architecture']['model']!r}, not of "
                f"{model.name!r} with these layers: resume it with the same --model, or choose "
                "another output directory."
            )
        changed = sorted(k for k, v in run["recipe"].items() if previous["recipe"].get(k) != v)
        if changed:
            raise ValueError(
                f"{out} holds a run with another recipe ({', '.join(changed)} differ): resume "
                "it with the run's own settings (see its recipe.json)."
            )
        if epochs <= done:
            planned = previous.get("epochs", done)
            state = "finished after" if done >= planned else f"interrupted after {done} of"
            raise RunFinished(
                f"{out} holds a run {state} {planned} epochs: nothing to resume with "
                f"epochs={epochs}. To train it longer, resume it with more epochs "
                f"(--epochs N, N > {done}); its best model is {out / 'best_model.keras'}."
            )
    for folder in (out, out / "backup"):  # what a killed run left half-written
        remove_partial_files(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / RUN_FILE, json.dumps(run, indent=2))
    if spec is not None:  # `kr.spec_from_dict` rebuilds the network this run trains
        write_text_atomically(out / "spec.json", json.dumps(run["spec"], indent=2))
    write_text_atomically(out / "recipe.json", json.dumps(run["recipe"], indent=2))
    return out


_STATE_WAY_OUT = " Train again into a new folder, or pass --overwrite to start this one afresh."


def committed_epoch(out: Path) -> dict:
    """The run's last committed epoch, `{"epoch": N, "weights": FILE}` (`backup/state.json`;
    epoch 0 and no weights before the first)."""
    state = out / "backup" / "state.json"
    if not state.exists():
        return {"epoch": 0, "weights": None}
    return read_json(state, "the run's last finished epoch", _STATE_WAY_OUT)


class RunState(keras.callbacks.Callback):
    """A run folder's state, kept so that a kill at any moment loses no finished epoch.

    At each epoch's end, once the loss is finite: `best_model.keras` (when `monitor`
    improved on every epoch in the log), `last_model.keras`, `log.csv` (one row an epoch,
    rewritten whole) and last the commit, the weights and optimizer state in
    `backup/epoch-N.weights.h5` named by `backup/state.json`; each file is written
    atomically. `on_train_begin` restores the last commit (the epoch, the weights, the
    log's rows before it and the best score among them). The backup stays when the run
    ends, so that a longer `--epochs` can continue a finished run.
    """

    def __init__(self, out: Path, monitor: str):
        super().__init__()
        self.out, self.monitor = out, monitor
        self.backup = out / "backup"

    def on_train_begin(self, logs=None):
        commit = committed_epoch(self.out)
        done = commit["epoch"]
        if done:
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(self.backup / commit["weights"])
            self.model._initial_epoch = done  # what BackupAndRestore sets for fit
        self.rows = [row for row in _read_log(self.out / "log.csv") if int(row["epoch"]) < done]
        scores = [float(row[self.monitor]) for row in self.rows if row.get(self.monitor)]
        self.best = max(scores, default=-math.inf)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not math.isfinite(logs.get("loss", 0.0)):
            return  # TerminateOnNaN ends the run: nothing of this epoch is kept
        if logs.get(self.monitor, -math.inf) > self.best:
            self.best = logs[self.monitor]
            self._save_model("best_model.keras")
        self._save_model("last_model.keras")
        self.rows.append({"epoch": epoch, **logs})
        _write_log(self.out / "log.csv", self.rows)
        weights = self.backup / f"epoch-{epoch + 1}.weights.h5"
        with atomic_path(weights) as temporary:
            self.model.save_weights(temporary)
        state = {"epoch": epoch + 1, "weights": weights.name}
        write_text_atomically(self.backup / "state.json", json.dumps(state))
        for old in self.backup.glob("epoch-*.weights.h5"):  # the commit's file stays
            if old != weights:
                old.unlink(missing_ok=True)

    def _save_model(self, name: str) -> None:
        with atomic_path(self.out / name) as temporary:
            self.model.save(temporary)


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _write_log(path: Path, rows: list[dict]) -> None:
    """`log.csv`, as `keras.callbacks.CSVLogger` writes it: an epoch column, then the
    metrics by name."""
    columns = ["epoch", *sorted({key for row in rows for key in row} - {"epoch"})]
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
