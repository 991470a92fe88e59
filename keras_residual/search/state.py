"""A search directory's state files: read with errors that name the file, repaired on resume.

The toolkit writes its own files atomically and makes keras-tuner's writes atomic too, so a
kill cannot truncate them any more. Files damaged otherwise (an older version, a full disk)
are named in the error with the way out; a trial whose `trial.json` is unreadable is rerun
with the hyperparameters the toolkit kept for it (`hyperparameters.json`).
"""

from __future__ import annotations

import json
from pathlib import Path

from keras_residual import _thirdparty
from keras_residual._files import StateError, read_json, write_text_atomically

HYPERPARAMETERS_FILE = "hyperparameters.json"  # the toolkit's copy, written as a trial starts
ORACLE_FILE = "oracle.json"
TRIAL_FILE = "trial.json"


def readable(path: Path) -> bool:
    try:
        read_json(path, "the trial's state")
    except StateError:
        return False
    return True


def repair_trials(project: str | Path, out: str | Path) -> list[str]:
    """Before resuming: rebuild every unreadable `trial.json` of `project` as an interrupted
    trial so that keras-tuner reruns it; returns a note per trial repaired.

    The damaged file is kept beside it as `trial.json.corrupt`. Raises `StateError` if the
    oracle's own state cannot be read (then no file is changed).
    """
    project = Path(project)
    damaged = [p for p in sorted(project.glob(f"trial_*/{TRIAL_FILE}")) if not readable(p)]
    if not damaged:
        return []
    oracle_path = project / ORACLE_FILE
    oracle = read_json(oracle_path, "keras-tuner's oracle state", _oracle_way_out(out))
    notes = []
    for path in damaged:
        trial_id = path.parent.name.removeprefix("trial_")
        kept = path.parent / HYPERPARAMETERS_FILE
        if not kept.exists():  # the trial never reached training: its configuration is gone
            hyperparameters = oracle["hyperparameters"]
        else:
            hyperparameters = read_json(kept, "the trial's hyperparameters")
        path.replace(path.with_name(TRIAL_FILE + ".corrupt"))
        state = _thirdparty.interrupted_trial_state(trial_id, hyperparameters)
        write_text_atomically(path, json.dumps(state))
        if trial_id not in oracle["ongoing_trials"].values():
            oracle["ongoing_trials"][f"repaired_{trial_id}"] = trial_id
        oracle["end_order"] = [t for t in oracle["end_order"] if t != trial_id]
        notes.append(
            f"{path} was truncated or corrupt (kept as {TRIAL_FILE}.corrupt): trial "
            f"{trial_id} runs again."
        )
    write_text_atomically(oracle_path, json.dumps(oracle))
    return notes


def _oracle_way_out(out) -> str:
    return (
        f" The finished trials are intact: `keras-residual report {out}` lists them. "
        "To search on, start a new --out."
    )


def check_oracle(project: str | Path, out: str | Path) -> None:
    """Raise `StateError` if keras-tuner's oracle state exists but cannot be read."""
    path = Path(project) / ORACLE_FILE
    if path.exists():
        read_json(path, "keras-tuner's oracle state", _oracle_way_out(out))
