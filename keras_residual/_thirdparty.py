"""The private parts of keras-tuner and TensorFlow the toolkit relies on, all in one place.

Each is named here once. `tests/test_thirdparty.py` checks that every one still exists, so
an upgrade that moves one fails there, naming the hook, instead of deep inside a search.
"""

from __future__ import annotations

from keras_tuner.src.engine import tuner_utils

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
