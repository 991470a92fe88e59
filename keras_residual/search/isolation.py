"""Run search trials in a trial process: bounded memory, and a crash fails one trial only.

TensorFlow keeps runtime state for every model it has trained, even once Python has
freed the model (tensorflow#61791): one process running a long search grows by tens of
MiB per trial. Trials train in a spawned process that serves one trial after another
until it has grown `MEMORY_SLACK_MIB` past its size after its first trial; the next
trial then starts a fresh one, which gives all of it back. An out-of-memory kill or a
crash in native code fails the trial it was running, not the search. Serving trials in
turn spares each one the start-up (importing TensorFlow: 3-10 s of a CPU core) that a
process per trial paid while the trial before it trained.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import resource
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
MEMORY_SLACK_MIB = 256  # a trial process's growth (RSS) past its first trial


class _PipeWriter(io.TextIOBase):
    """The child's `sys.stdout` (or `sys.stderr`): text goes to the parent, which prints it
    (Keras progress bars included) on its own stdout (stderr), a terminal or a notebook
    cell alike. Once the parent is gone, the child exits quietly."""

    def __init__(self, connection, tty: bool, stream: str = "output"):
        self._connection, self._tty, self._stream = connection, tty, stream

    def write(self, text: str) -> int:
        _send(self._connection, (self._stream, text))
        return len(text)

    def isatty(self) -> bool:
        return self._tty


def _send(connection, message) -> None:
    """Send `message` to the parent; if it has died (a killed search), end this process
    without a traceback: nobody is left to read one."""
    try:
        connection.send(message)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        os._exit(1)


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # a SIGKILLed search takes its trial with it
        time.sleep(0.5)
    os._exit(1)


def resident_mib() -> float:
    """This process's resident memory, MiB; where /proc is missing (macOS), its peak.

    Not the peak on Linux: a spawned process's starts at its parent's size at the fork."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # bytes on macOS


def _serve(connection, parent_pid: int, tty: bool) -> None:
    """Run the trial jobs the parent sends, in turn, until it closes the connection."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    sys.stdout = _PipeWriter(connection, tty)
    sys.stderr = _PipeWriter(connection, tty, "error")  # Python's warnings, not TF's C++
    while True:
        try:
            job = connection.recv()
        except EOFError:  # no more trials for this process
            return
        try:
            kind, payload = "result", run_trial_job(**job)
        except Exception as error:
            failed = isinstance(error, keras_tuner.errors.FailedTrialError)
            kind, payload = ("failed" if failed else "error"), traceback.format_exc()
        keras.backend.clear_session()  # the next trial starts from an empty graph
        _send(connection, (kind, payload, resident_mib()))


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


def quiet_native_output() -> bool:
    """Whether TensorFlow's C++ notices are unwanted: `TF_CPP_MIN_LOG_LEVEL` is 2 or more
    (the command line's default). absl and oneDNN print some whatever that level says."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip()
    return level.isdigit() and int(level) >= 2


def _start():
    parent_end, child_end = _CONTEXT.Pipe()
    process = _CONTEXT.Process(
        target=_serve,
        args=(child_end, os.getpid(), sys.stdout.isatty()),
        name="keras-residual-trial",
        daemon=True,
    )
    with _native_stderr_to_devnull(quiet_native_output()):  # the child inherits fd 2
        process.start()
    child_end.close()
    return process, parent_end


@contextlib.contextmanager
def _native_stderr_to_devnull(quiet: bool):
    """File descriptor 2 points at /dev/null while the block runs (if `quiet`): what a
    process started in it inherits. The child's Python output still reaches the parent
    through its pipe."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"exit code {code}"


class TrialProcesses:
    """Runs trial jobs one at a time in a trial process, replaced once it has grown
    `memory_slack_mib` past its size after its first trial, or has died."""

    memory_slack_mib: float = MEMORY_SLACK_MIB

    def __init__(self):
        self._worker, self._baseline = None, None

    def run(self, job: dict, heartbeat: Callable | None = None, interval: float = 2.0):
        """Run `job` (keyword arguments of `run_trial_job`) and return its results.

        `heartbeat()` is called every `interval` seconds while the trial runs. A trial that
        raises `FailedTrialError` or whose process dies raises `FailedTrialError` here; any
        other error in the trial raises `RuntimeError` carrying the trial's traceback.
        """
        if self._worker is None:
            self._worker, self._baseline = _start(), None
        process, connection = self._worker
        try:
            connection.send(job)
            beat = time.monotonic()
            while True:
                if heartbeat is not None and time.monotonic() - beat >= interval:
                    heartbeat()
                    beat = time.monotonic()
                if not connection.poll(interval):
                    continue
                message = connection.recv()
                if message[0] not in ("output", "error"):
                    break
                stream = sys.stdout if message[0] == "output" else sys.stderr
                stream.write(message[1])
                stream.flush()
        except (EOFError, BrokenPipeError):
            process.join(5)
            self.close()
            raise keras_tuner.errors.FailedTrialError(
                f"the trial's process ended early: {_describe_exit(process.exitcode)}"
            ) from None
        except BaseException:  # interrupted mid-trial: the trial dies with its process
            process.kill()
            self.close()
            raise
        kind, payload, resident = message
        self._baseline = resident if self._baseline is None else self._baseline
        if resident - self._baseline > self.memory_slack_mib:
            self.close()
        if kind == "result":
            return payload
        if kind == "failed":  # the payload's last line names the trial's error
            raise keras_tuner.errors.FailedTrialError(payload)
        raise RuntimeError(payload)

    def close(self) -> None:
        """End the trial process: it exits once told there are no more trials."""
        if self._worker is not None:
            process, connection = self._worker
            self._worker = None
            connection.close()
            _stop(process)


def _stop(process) -> None:
    process.join(10)  # it exits once its connection is closed
    if process.is_alive():
        process.kill()
        process.join()
