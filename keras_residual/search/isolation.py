"""Run each search trial in a fresh process: flat memory, and a crash fails one trial only.

TensorFlow keeps runtime state for every model it has trained, even once Python has
freed the model (tensorflow#61791): one process running a long search grows by about
17 MiB per trial. A trial in its own spawned process gives all of it back when it ends,
and an out-of-memory kill or a crash in native code fails that trial, not the search.
The next process starts (and imports TensorFlow) while the current trial trains, so the
start-up costs no wall-clock time between trials.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import keras
import keras_tuner

from keras_residual import _thirdparty

_CONTEXT = multiprocessing.get_context("spawn")  # fork is unsafe once TensorFlow runs


class _PipeWriter(io.TextIOBase):
    """The child's `sys.stdout`: text goes to the parent, which prints it (Keras progress
    bars included) on its own stdout, a terminal or a notebook cell alike."""

    def __init__(self, connection, tty: bool):
        self._connection, self._tty = connection, tty

    def write(self, text: str) -> int:
        self._connection.send(("output", text))
        return len(text)

    def isatty(self) -> bool:
        return self._tty


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # a SIGKILLed search takes its trial with it
        time.sleep(0.5)
    os._exit(1)


def _serve(connection, parent_pid: int, tty: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    sys.stdout = _PipeWriter(connection, tty)
    try:
        job = connection.recv()
    except EOFError:  # standby no longer needed
        return
    try:
        connection.send(("result", run_trial_job(**job)))
    except Exception as error:
        failed = isinstance(error, keras_tuner.errors.FailedTrialError)
        connection.send(("failed" if failed else "error", traceback.format_exc()))


def run_trial_job(
    hypermodel: keras_tuner.HyperModel,
    hyperparameters: dict,
    args: tuple,
    kwargs: dict,
    objective,
    checkpoint: str,
    build_config: str,
    initial_weights: str | None = None,
    seed: int = 0,
    dtype_policy: str = "float32",
):
    """Build and fit one trial's model the way `keras_tuner.Tuner` does, saving its best
    epoch's weights to `checkpoint`; returns what `hypermodel.fit` returns."""
    keras.config.set_dtype_policy(dtype_policy)
    keras.utils.set_random_seed(seed)
    hp = keras_tuner.HyperParameters.from_config(hyperparameters)
    model = hypermodel.build(hp)
    if initial_weights:  # Hyperband continues a previous trial's model
        model.load_weights(initial_weights)
    callbacks = [*kwargs.pop("callbacks", ()), _thirdparty.SaveBestEpoch(objective, checkpoint)]
    results = hypermodel.fit(hp, model, *args, callbacks=callbacks, **kwargs)
    Path(build_config).write_text(json.dumps(model.get_build_config()))
    return results


def _start():
    parent_end, child_end = _CONTEXT.Pipe()
    process = _CONTEXT.Process(
        target=_serve,
        args=(child_end, os.getpid(), sys.stdout.isatty()),
        name="keras-residual-trial",
        daemon=True,
    )
    process.start()
    child_end.close()
    return process, parent_end


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"exit code {code}"


class TrialProcesses:
    """Runs trial jobs one at a time, each in a new process, keeping the next one warm."""

    def __init__(self):
        self._standby = None

    def run(self, job: dict, heartbeat: Callable | None = None, interval: float = 2.0):
        """Run `job` (keyword arguments of `run_trial_job`) and return its results.

        `heartbeat()` is called every `interval` seconds while the trial runs. A trial that
        raises `FailedTrialError` or whose process dies raises `FailedTrialError` here; any
        other error in the trial raises `RuntimeError` carrying the trial's traceback.
        """
        process, connection = self._standby or _start()
        self._standby = _start()
        try:
            connection.send(job)
            beat = time.monotonic()
            while True:
                if heartbeat is not None and time.monotonic() - beat >= interval:
                    heartbeat()
                    beat = time.monotonic()
                if not connection.poll(interval):
                    continue
                kind, payload = connection.recv()
                if kind == "output":
                    sys.stdout.write(payload)
                    sys.stdout.flush()
                elif kind == "result":
                    return payload
                elif kind == "failed":  # the payload's last line names the trial's error
                    raise keras_tuner.errors.FailedTrialError(payload)
                else:
                    raise RuntimeError(payload)
        except (EOFError, BrokenPipeError):
            process.join(5)
            raise keras_tuner.errors.FailedTrialError(
                f"the trial's process ended early: {_describe_exit(process.exitcode)}"
            ) from None
        finally:
            connection.close()
            _stop(process)

    def close(self) -> None:
        """Stop the process kept on standby."""
        if self._standby is not None:
            self._standby[0].kill()
            self._standby[0].join()
            self._standby = None


def _stop(process) -> None:
    process.join(10)  # it exits once it has sent its result
    if process.is_alive():
        process.kill()
        process.join()
