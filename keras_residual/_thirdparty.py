"""The private parts of keras-tuner and TensorFlow the toolkit relies on, all in one place.

Each is named here once. `tests/test_thirdparty.py` checks that every one still exists, so
an upgrade that moves one fails there, naming the hook, instead of deep inside a search.
"""

from __future__ import annotations

import contextlib
import json

import keras_tuner
from keras_tuner.src.engine import tuner_utils

from keras_residual._files import write_text_atomically

# keras-tuner's checkpoint callback (best epoch's weights) and its results check.
SaveBestEpoch = tuner_utils.SaveBestEpoch
validate_trial_results = tuner_utils.validate_trial_results

# Methods of `keras_tuner.Tuner` the toolkit calls or overrides.
TUNER_HOOKS = ("_build_and_fit_model", "_get_checkpoint_fname", "_get_build_config_fname")
# Attributes of a keras-tuner oracle the distributed watch reads or wraps.
ORACLE_HOOKS = (
    "ongoing_trials",
    "tuner_ids",
    "end_trial",
    "create_trial",
    "update_trial",
    "get_trial",
)


def is_tuner_callback(callback) -> bool:
    """True for keras-tuner's own callbacks (they hold the tuner, so cannot be pickled)."""
    return type(callback).__module__ == tuner_utils.__name__


def checkpoint_path(tuner, trial_id: str) -> str:
    """Where keras-tuner keeps a trial's best weights."""
    return tuner._get_checkpoint_fname(trial_id)


def build_config_path(tuner, trial_id: str) -> str:
    """Where keras-tuner keeps a trial's model build config."""
    return tuner._get_build_config_fname(trial_id)


def silence_tensorflow_deprecations():
    """A context in which the TF v1 profiler prints no deprecation notices."""
    from tensorflow.python.util import deprecation

    return deprecation.silence()


def called_function_graph(graph, op):
    """The graph of the function a `PartitionedCall` op calls."""
    return graph._get_function(op.get_attr("f").name).graph


@contextlib.contextmanager
def failed_trials_untraced():
    """A context in which keras-tuner prints no failed trial's traceback (its `DEBUG`
    default): the trial keeps it in its message, the search prints a line with the reason."""
    from keras_tuner.src import config

    debug, config.DEBUG = config.DEBUG, False
    try:
        yield
    finally:
        config.DEBUG = debug


def make_keras_tuner_writes_atomic() -> None:
    """keras-tuner writes `oracle.json` and `trial.json` in place, so a kill mid-write can
    leave a truncated file; route its local writes through a temporary file and a rename."""
    from keras_tuner.src import utils

    if getattr(utils.save_json, "atomic", False):
        return
    write_in_place = utils.save_json

    def save_json(path, obj):
        if "://" in str(path):  # a remote file system: keras-tuner's own writer
            return write_in_place(path, obj)
        text = json.dumps(obj)
        write_text_atomically(path, text)
        return text

    save_json.atomic = True
    utils.save_json = save_json


def interrupted_trial_state(trial_id: str, hyperparameters: dict) -> dict:
    """The `trial.json` content of a trial that started with `hyperparameters` (a
    `HyperParameters.get_config()`) and never finished: keras-tuner reruns it."""
    hp = keras_tuner.HyperParameters.from_config(hyperparameters)
    return keras_tuner.engine.trial.Trial(hp, trial_id=trial_id, status="RUNNING").get_state()
