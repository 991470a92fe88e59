import keras
import numpy as np
import pytest
from conftest import learnable_images

import keras_residual as kr


def _batch(count=8, shape=(28, 28, 1)):
    x, y = learnable_images(count, shape)
    return x.astype("float32") / 255, y.astype("int32")


def test_gradient_norms_follow_the_blocks_from_input_to_output():
    model = kr.resnet_cifar(8, (28, 28, 1), width=4)
    x, y = _batch()
    rows = kr.gradient_norms(model, x, y)
    assert [r["group"] for r in rows] == [
        "stem_conv", "stem_bn", "stage1_block1", "stage2_block1", "stage3_block1", "predictions"
    ]  # fmt: skip
    assert [r["position"] for r in rows] == list(range(len(rows)))
    assert sum(r["parameters"] for r in rows) == sum(
        int(np.prod(w.shape)) for w in model.trainable_weights
    )
    assert all(np.isfinite(r["gradient_norm"]) and r["gradient_norm"] > 0 for r in rows)
    layers = kr.gradient_norms(model, x, y, by="layer")
    assert "stage2_block1/stage2_block1_conv1" in [r["group"] for r in layers]
    block = next(r for r in rows if r["group"] == "stage2_block1")
    inside = [r for r in layers if r["group"].startswith("stage2_block1/")]
    assert block["gradient_norm"] == pytest.approx(
        np.sqrt(sum(r["gradient_norm"] ** 2 for r in inside))
    )
    one_hot = kr.gradient_norms(model, x, keras.utils.to_categorical(y, 10))
    norms = [r["gradient_norm"] for r in rows]
    assert [r["gradient_norm"] for r in one_hot] == pytest.approx(norms)


@pytest.mark.parametrize("softmax", [True, False])
def test_gradient_norms_match_the_closed_form_of_softmax_regression(softmax):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 5)).astype("float32"), np.array([0, 1, 2, 0, 1, 2])
    inputs = keras.Input((5,))
    dense = keras.layers.Dense(3, activation="softmax" if softmax else None, name="predictions")
    model = keras.Model(inputs, dense(inputs))
    logits = x @ dense.kernel.numpy() + dense.bias.numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    error = (p - np.eye(3)[y]) / len(y)  # d mean-cross-entropy / d logits
    expected = np.sqrt(np.sum((x.T @ error) ** 2) + np.sum(error.sum(0) ** 2))
    (row,) = kr.gradient_norms(model, x, y)
    assert row["gradient_norm"] == pytest.approx(expected, rel=1e-4)


def test_gradient_norms_reject_bad_input():
    model = kr.resnet_cifar(8, (28, 28, 1), width=4)
    x, y = _batch(4)
    with pytest.raises(ValueError, match="`by`"):
        kr.gradient_norms(model, x, y, by="stage")
    with pytest.raises(ValueError, match="4 images, 3 labels"):
        kr.gradient_norms(model, x, y[:3])


def test_plot_gradient_flow_draws_one_line_per_model():
    x, y = _batch(4)
    shallow = kr.gradient_norms(kr.resnet_cifar(8, (28, 28, 1), width=4), x, y)
    deep = kr.gradient_norms(kr.resnet_cifar(14, (28, 28, 1), width=4), x, y)
    figure = kr.plot_gradient_flow({"ResNet-8": shallow, "ResNet-14": deep})
    (axis,) = figure.axes
    assert [line.get_label() for line in axis.get_lines()] == ["ResNet-8", "ResNet-14"]
    assert axis.get_xlabel().startswith("relative depth")  # different blocks: depth in [0, 1]
    assert max(axis.get_lines()[1].get_xdata()) == 1.0
    same = kr.plot_gradient_flow(shallow).axes[0]
    assert [t.get_text() for t in same.get_xticklabels()][2] == "stage1_block1"


@pytest.mark.slow
def test_degradation_experiment_trains_plain_and_residual_twins(data_dir):
    data = kr.load_dataset("mnist", data_dir).subset(train=192, val=64, test=64)
    recipe = kr.get_recipe("fast", batch_size=64)
    result = kr.degradation_experiment(data, (8, 14), epochs=2, recipe=recipe, width=4)
    assert [(r["kind"], r["depth"]) for r in result.final] == [
        ("plain", 8), ("residual", 8), ("plain", 14), ("residual", 14)
    ]  # fmt: skip
    assert list(result.curves) == ["plain8", "resnet8", "plain14", "resnet14"]
    for row, curve in zip(result.final, result.curves.values(), strict=True):
        assert len(curve["loss"]) == 2 * 3  # steps per epoch x epochs
        # The per-step losses average back to the epoch's loss that Keras reported.
        assert np.mean(curve["loss"][3:]) == pytest.approx(curve["history"]["loss"][1], rel=1e-4)
        assert 0 <= row["val_accuracy"] <= 1 and row["params"] > 0 and row["seconds"] > 0
    figure = kr.plot_degradation(result)
    assert len(figure.axes) == 2 and len(figure.axes[0].get_lines()) == 4
    with pytest.raises(ValueError, match="`depths`"):
        kr.degradation_experiment(data, ())
