"""The private keras-tuner and TensorFlow hooks the toolkit uses still exist.

If one of these fails after an upgrade, `keras_residual/_thirdparty.py` names the hook
and is the one place to adapt.
"""

import keras_tuner
import pytest
import tensorflow as tf

from keras_residual import _thirdparty
from keras_residual.search import ResidualHyperModel
from keras_residual.search.tuner import RandomSearch


@pytest.mark.parametrize("hook", _thirdparty.TUNER_HOOKS)
def test_keras_tuner_tuner_hooks_exist(hook):
    assert callable(getattr(keras_tuner.Tuner, hook, None)), (
        f"keras-tuner {keras_tuner.__version__} no longer has Tuner.{hook}"
    )


def test_keras_tuner_oracle_hooks_and_paths(tmp_path):
    tuner = RandomSearch(
        ResidualHyperModel((8, 8, 1), 2, width=4, blocks_per_stage=1, stages=1),
        objective="val_accuracy",
        max_trials=1,
        directory=tmp_path,
        isolate_trials=False,
    )
    for hook in _thirdparty.ORACLE_HOOKS:
        assert hasattr(tuner.oracle, hook), f"keras-tuner oracles no longer have {hook}"
    trial = tuner.oracle.create_trial("t0")
    checkpoint = _thirdparty.checkpoint_path(tuner, trial.trial_id)
    assert checkpoint.startswith(tuner.get_trial_dir(trial.trial_id))
    assert _thirdparty.build_config_path(tuner, trial.trial_id).endswith(".json")
    assert callable(_thirdparty.SaveBestEpoch) and callable(_thirdparty.validate_trial_results)


def test_tensorflow_function_graph_hook():
    @tf.function
    def inner(x):
        return tf.matmul(x, x)

    @tf.function
    def outer(x):
        return inner(x) + 1.0

    graph = outer.get_concrete_function(tf.TensorSpec((2, 2))).graph
    calls = [op for op in graph.get_operations() if op.type.endswith("PartitionedCall")]
    assert calls, "TensorFlow no longer emits function calls as PartitionedCall ops"
    called = _thirdparty.called_function_graph(graph, calls[0])
    assert any(op.type == "MatMul" for op in called.get_operations())
    with _thirdparty.silence_tensorflow_deprecations():
        pass


def test_keras_tuner_debug_switch():
    from keras_tuner.src import config

    before = config.DEBUG
    with _thirdparty.failed_trials_untraced():
        assert config.DEBUG is False  # read by keras-tuner when a trial fails
    assert before == config.DEBUG
