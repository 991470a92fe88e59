"""keras-tuner's chief/worker mode, plus a chief-side watch for workers that died."""

from __future__ import annotations

import os
import threading
import time

import keras_tuner

ENV_VARS = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


def role() -> str | None:
    """`"chief"`, `"worker"`, or None when keras-tuner's variables are not set."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    if tuner_id is None:
        return None
    return "chief" if tuner_id == "chief" else "worker"


def check_environment() -> str:
    """Return the role, or explain which variables a distributed search needs."""
    missing = [name for name in ENV_VARS if not os.environ.get(name)]
    if missing:
        raise ValueError(
            f"--distributed needs {', '.join(missing)} set: KERASTUNER_TUNER_ID=chief on "
            "the chief and a unique id (tuner0, tuner1, ...) on each worker, all with the "
            "chief's KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT."
        )
    return role()


def watch_workers(oracle, timeout: float, interval: float = 1.0) -> threading.Thread:
    """On the chief: end the trial of a worker silent for `timeout` seconds as failed.

    keras-tuner then retries it on another worker (`max_retries_per_trial`), and the
    chief no longer waits for the dead worker, so the search completes. A worker is
    heard from when it asks for a trial, reports a result, or sends the heartbeat that
    a trial in its trial process sends every few seconds.
    """
    seen: dict[str, float] = {}
    create_trial = oracle.create_trial

    def on_create(tuner_id, *args, **kwargs):
        seen[tuner_id] = time.monotonic()
        return create_trial(tuner_id, *args, **kwargs)

    def heard_about(method):
        def wrapper(trial_id, *args, **kwargs):
            for tuner_id, trial in list(oracle.ongoing_trials.items()):
                if trial.trial_id == trial_id:
                    seen[tuner_id] = time.monotonic()
            return method(trial_id, *args, **kwargs)

        return wrapper

    oracle.create_trial = on_create
    # update_trial: a result; get_trial: the heartbeat a worker sends while its trial trains
    oracle.update_trial = heard_about(oracle.update_trial)
    oracle.get_trial = heard_about(oracle.get_trial)

    def reap():
        while True:
            time.sleep(interval)
            now = time.monotonic()
            for tuner_id, trial in list(oracle.ongoing_trials.items()):
                if now - seen.get(tuner_id, now) > timeout:
                    print(f"Worker {tuner_id} silent for {timeout:.0f} s: trial "
                          f"{trial.trial_id} ends as failed and is retried elsewhere.")  # fmt: skip
                    trial.status = keras_tuner.engine.trial.TrialStatus.FAILED
                    trial.message = f"worker {tuner_id} stopped answering"
                    oracle.end_trial(trial)
                    oracle.tuner_ids.discard(tuner_id)

    thread = threading.Thread(target=reap, name="keras-residual-worker-watch", daemon=True)
    thread.start()
    return thread
