"""The user's own data: folders of images, .npz arrays, keras.datasets' other image sets,
the hypermodel inside stock keras-tuner, and a space that follows the image size."""

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from conftest import learnable_images

import keras_residual as kr
from keras_residual.data import DataError
from keras_residual.search import ResidualHyperModel
from keras_residual.search.space import downsampling
from keras_residual_cli import main


def write_images(folder, classes=("cats", "dogs"), count=12, sizes=((20, 24), (16, 16)), rgb=True):
    """`count` PNGs per class, alternating between `sizes`, striped by class."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for i in range(count):
            height, width = sizes[i % len(sizes)]
            image = rng.integers(0, 60, (height, width, 3 if rgb else 1), dtype=np.uint8)
            image[:: 2 + label] += 150
            (folder / name / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())
    (folder / classes[0] / "notes.txt").write_text("not an image: ignored")
    return folder


# --- folders ---------------------------------------------------------------------------


def test_image_folder_becomes_a_dataset(tmp_path):
    folder = write_images(tmp_path / "pets")
    data = kr.load_dataset(folder, image_size=(18, 22), validation_split=0.25)
    assert data.input_shape == (18, 22, 3) and data.class_names == ("cats", "dogs")
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (16, 6, 2)
    assert data.x_train.dtype == np.uint8 and data.name == "pets"
    # Labels follow the folders: the stripes of class 1 have period 3, of class 0 period 2.
    images = np.concatenate([data.x_train, data.x_val, data.x_test])
    labels = np.concatenate([data.y_train, data.y_val, data.y_test])
    assert np.bincount(labels).tolist() == [12, 12]
    assert images.shape[0] == 24
    # The test split does not move with the validation split.
    again = kr.load_dataset(folder, image_size=(18, 22), validation_split=0.5)
    np.testing.assert_array_equal(again.x_test, data.x_test)


def test_grayscale_is_detected_and_size_defaults_to_the_first_image(tmp_path):
    folder = write_images(tmp_path / "gray", rgb=False, sizes=((16, 16), (20, 20)))
    data = kr.load_dataset(folder)
    assert data.input_shape == (16, 16, 1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root, "no class subfolders"),
        (lambda root: write_images(root, classes=("only",)), "one class"),
        (lambda root: (root / "a").mkdir() or write_images(root / "b", classes=("x", "y")) and
         root, "hold no images"),
    ],
)  # fmt: skip
def test_bad_folders_are_named(tmp_path, make, message):
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    with pytest.raises(DataError, match=message):
        kr.load_dataset(root)


def test_an_unreadable_image_is_named_and_refused(tmp_path):
    folder = write_images(tmp_path / "pets")
    (folder / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"dogs/broken\.png"):
        kr.load_dataset(folder, image_size=16)


# --- arrays ----------------------------------------------------------------------------


def test_npz_of_arrays_with_one_hot_labels_and_no_test_split(tmp_path):
    x, y = learnable_images(50, (12, 10))
    np.savez(tmp_path / "mine.npz", x_train=x.astype("float32") / 255, y_train=np.eye(10)[y])
    data = kr.load_dataset(tmp_path / "mine.npz", validation_split=0.2)
    assert data.input_shape == (12, 10, 1) and data.num_classes == y.max() + 1
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (35, 10, 5)
    assert 0.9 < data.std[0] * 255 / np.std(x) < 1.1  # statistics of [0, 1] pixels, unfloored


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((4, 8, 8)), "y_train": np.zeros(3)}, "4 images but y_train 3"),
        ({"x_train": np.zeros((4, 8, 8)), "y_train": np.arange(4), "x_test": np.zeros((2, 8, 8)),
          "y_test": np.array([0, 9])}, r"y_test \(classes .* in 0..3; got 9"),
        ({"x_train": np.zeros((4, 8, 8)), "y_train": np.arange(4), "x_test": np.zeros((2, 8, 8))},
         "only one of x_test and y_test"),
        ({"x_train": np.zeros(4), "y_train": np.arange(4)}, "x_train must be"),
        ({"x_train": np.zeros((4, 8, 8, 8)), "y_train": np.arange(4), "layout": "series"},
         r"x_train must be a non-empty numeric array of series"),
        ({"y_train": np.arange(4)}, "lacks the arrays"),
    ],
)  # fmt: skip
def test_bad_arrays_are_named(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        kr.load_dataset(tmp_path / "bad.npz")


def test_other_keras_datasets_and_missing_paths(tmp_path):
    x, y = learnable_images(30, (28, 28))
    (tmp_path / "fashion_mnist").mkdir()
    np.savez(tmp_path / "fashion_mnist" / "fashion_mnist.npz",
             x_train=x, y_train=y, x_test=x, y_test=y)  # fmt: skip
    data = kr.load_dataset("fashion_mnist", tmp_path)
    assert data.class_names[-1] == "ankle boot" and data.input_shape == (28, 28, 1)
    with pytest.raises(DataError, match="cifar100/cifar100.npz"):
        kr.load_dataset("cifar100", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        kr.load_dataset(tmp_path / "nowhere" / "images")
    with pytest.raises(DataError, match="neither one of mnist, fashion_mnist"):
        kr.load_dataset("imagenet")


# --- stock keras-tuner -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tuner_class", "as_dataset"),
    [(keras_tuner.RandomSearch, False), (keras_tuner.BayesianOptimization, True),
     (keras_tuner.Hyperband, False)],
)  # fmt: skip
def test_the_hypermodel_inside_stock_keras_tuner(tmp_path, tuner_class, as_dataset):
    x, y = learnable_images(96, (16, 16))
    x = x.astype("float32") / 255  # the user's own preprocessing: kept as it is
    hypermodel = ResidualHyperModel((16, 16, 1), 10, width=[4, 8], blocks_per_stage=1)
    budget = {"max_epochs": 2, "factor": 2} if tuner_class is keras_tuner.Hyperband else {}
    tuner = tuner_class(
        hypermodel,
        objective="val_accuracy",
        directory=tmp_path,
        seed=1,
        **(budget or {"max_trials": 2}),
    )
    if as_dataset:
        train = tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(16)
        val = tf.data.Dataset.from_tensor_slices((x[64:], y[64:])).batch(16)
        tuner.search(train, validation_data=val, epochs=1, verbose=0)
    else:  # one-hot training labels, integer validation labels
        one_hot = keras.utils.to_categorical(y[:64], 10)
        tuner.search(x[:64], one_hot, validation_data=(x[64:], y[64:]), epochs=1, verbose=0)
    trials = tuner.oracle.get_best_trials(10)
    assert len(trials) >= 2 and all(t.status == "COMPLETED" for t in trials)
    assert {t.hyperparameters.get("width") for t in trials} == {4, 8}
    best = tuner.get_best_models(1)[0]
    assert best.predict(x[64:], verbose=0).shape == (32, 10)
    score = trials[0].metrics.get_best_value("val_accuracy")
    assert 0.0 <= score <= 1.0


def test_bad_labels_in_stock_use_are_named():
    hypermodel = ResidualHyperModel((16, 16, 1), 3, width=4, blocks_per_stage=1)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    x = np.zeros((8, 16, 16, 1), "float32")
    with pytest.raises(DataError, match="y must be whole class numbers in 0..2; got 5"):
        hypermodel.fit(hp, model, x, np.full(8, 5), epochs=1, verbose=0)


# --- the space follows the image size --------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "final"),
    [((28, 28, 1), 7), ((32, 32, 3), 8), ((64, 64, 3), 8), ((96, 96, 3), 6),
     ((96, 128, 3), 6), ((224, 224, 3), 7), ((12, 12, 1), 6)],
)  # fmt: skip
def test_networks_end_near_seven_pixels(shape, final):
    hypermodel = ResidualHyperModel(shape, 5, width=4, blocks_per_stage=1, downsample="stride")
    model = hypermodel.build(keras_tuner.HyperParameters())
    last = model.get_layer("stage3_block1").output.shape
    assert min(last[1:3]) == final
    assert downsampling(shape, 3)[0] == ("imagenet" if shape[0] >= 96 else "cifar")


@pytest.mark.parametrize(
    ("shape", "final", "stem"),
    [((28, 28, 1), 3, "whiten"), ((32, 32, 3), 3, "whiten"), ((64, 64, 3), 7, "whiten"),
     ((224, 224, 3), 7, "imagenet")],
)  # fmt: skip
def test_pooling_networks_take_the_speed_familys_layout_on_small_images(shape, final, stem):
    hypermodel = ResidualHyperModel(shape, 5, width=4, blocks_per_stage=1, downsample="pool")
    assert hypermodel.spec(keras_tuner.HyperParameters()).stem == stem
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert min(model.get_layer("stage3_block1").output.shape[1:3]) == final


# --- the command line ------------------------------------------------------------------


@pytest.mark.slow
def test_search_a_folder_end_to_end(tmp_path, capsys, recwarn):
    folder = write_images(tmp_path / "pets", count=20)
    out = tmp_path / "run"
    argv = ["search", "--dataset", str(folder), "--image-size", "16", "--max-trials", "1"]
    argv += ["--width", "4", "--blocks-per-stage", "1", "--out", str(out), "--dtype", "float32"]
    argv += ["--final-epochs", "1"]  # retrained with the recipe's frozen norm scales
    argv += ["--in-process"]
    assert main(argv) == 0
    assert (out / "best_model.keras").exists()
    assert "test accuracy" in capsys.readouterr().out.lower()
    assert not [w for w in recwarn if "Skipping variable loading" in str(w.message)]
    model = keras.saving.load_model(out / "best_model.keras")
    assert model.input_shape == (None, 16, 16, 3)
    resized = [*argv[:4], "24", *argv[5:], "--resume"]  # another size: another search
    assert main(resized) == 2 and "image_size differ" in capsys.readouterr().err
    assert (out / "best_model.keras").exists()  # refused, nothing lost


def test_images_too_small_for_a_model_are_refused_before_training(tmp_path, capsys):
    folder = write_images(tmp_path / "pets", sizes=((16, 16),))
    out = tmp_path / "run"
    argv = ["train", "--model", "resnet18", "--dataset", str(folder), "--out", str(out)]
    assert main(argv) == 2
    assert "too small" in capsys.readouterr().err and not out.exists()
