import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import learnable_images, write_npz

import keras_residual as kr
from keras_residual.data import DATA_ENV


def test_loads_the_documented_layout_with_a_validation_split(data_dir):
    data = kr.load_dataset("mnist", data_dir, validation_split=0.2)
    assert data.x_train.shape == (480, 28, 28, 1) and data.x_val.shape == (120, 28, 28, 1)
    assert data.x_test.shape == (100, 28, 28, 1)
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int32
    # train and validation partition the original training set
    x_all, _ = learnable_images(600, (28, 28), seed=1)
    joined = np.concatenate([data.x_train, data.x_val])[..., 0]
    assert sorted(map(bytes, joined)) == sorted(map(bytes, x_all))
    assert kr.load_dataset("cifar10", data_dir).input_shape == (32, 32, 3)


def test_environment_variable_names_the_data_directory(data_dir, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(data_dir))
    assert kr.load_dataset("mnist").source == str(data_dir / "mnist" / "mnist.npz")


def test_keras_cifar_batches_folder_is_accepted(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images, labels = learnable_images(20, (32, 32, 3))
    flat = images.transpose(0, 3, 1, 2).reshape(20, -1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": flat, b"labels": list(labels)}, handle)
    data = kr.load_dataset("cifar10", tmp_path, validation_split=0.0)
    assert data.x_train.shape == (100, 32, 32, 3)
    np.testing.assert_array_equal(data.x_test, images)


def test_missing_data_says_which_files_go_where(tmp_path):
    with pytest.raises(kr.DataError) as error:
        kr.load_dataset("cifar10", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "cifar10" / "cifar10.npz") in message
    assert "cifar-10-batches-py" in message


def test_keras_download_failure_explains_the_offline_route(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)

    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(kr.DataError, match="--data-dir.*mnist/mnist.npz"):
        kr.load_dataset("mnist")


def test_truncated_file_gives_a_clear_error(tmp_path):
    good = write_npz(tmp_path / "good" / "mnist" / "mnist.npz", (28, 28))
    bad = tmp_path / "bad" / "mnist" / "mnist.npz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(kr.DataError, match="truncated or corrupt"):
        kr.load_dataset("mnist", tmp_path / "bad")


def test_wrong_arrays_give_a_clear_error(tmp_path):
    path = tmp_path / "mnist" / "mnist.npz"
    path.parent.mkdir()
    np.savez(path, x_train=np.zeros((4, 32, 32, 3), "uint8"), y_train=np.zeros(4))
    with pytest.raises(kr.DataError, match="lacks the arrays"):
        kr.load_dataset("mnist", tmp_path)
    np.savez(path, x_train=np.zeros((4, 32, 32, 3), "uint8"), y_train=np.zeros(4),
             x_test=np.zeros((4, 32, 32, 3), "uint8"), y_test=np.zeros(4))  # fmt: skip
    with pytest.raises(kr.DataError, match=r"shape \(N, \*\(28, 28, 1\)\)"):
        kr.load_dataset("mnist", tmp_path)


def test_unknown_dataset_is_rejected():
    with pytest.raises(ValueError, match="`dataset`"):
        kr.load_dataset("imagenet")


def _batches(pipeline):
    return [(x.numpy(), y.numpy()) for x, y in pipeline]


def test_pipeline_normalises_with_training_statistics(data_dir):
    data = kr.load_dataset("cifar10", data_dir)
    (x, y), *_ = _batches(kr.make_pipeline(data, "test", batch_size=1000))
    expected = (data.x_test.astype("float32") - data.mean) / data.std
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y.argmax(axis=1), data.y_test)
    train = np.concatenate([b[0] for b in _batches(kr.make_pipeline(data, augment=False))])
    np.testing.assert_allclose(train.mean(axis=(0, 1, 2)), 0, atol=1e-4)


def test_cifar_augmentation_is_crop_and_flip_of_the_padded_image(data_dir):
    data = kr.load_dataset("cifar10", data_dir)
    plain = (data.x_train.astype("float32") - data.mean) / data.std
    pipeline = kr.make_pipeline(data, batch_size=len(data.y_train), shuffle=False, seed=3)
    ((x, _),) = _batches(pipeline)
    padded = np.pad(plain, [(0, 0), (4, 4), (4, 4), (0, 0)])
    moved = flipped = 0
    for image, source in zip(x, padded, strict=True):
        views = {
            (dy, dx, f): (source[dy : dy + 32, dx : dx + 32][:, ::-1] if f else
                          source[dy : dy + 32, dx : dx + 32])
            for dy in range(9) for dx in range(9) for f in (0, 1)
        }  # fmt: skip
        match = [k for k, v in views.items() if np.allclose(v, image, atol=1e-5)]
        assert match, "every augmented image is a crop (maybe flipped) of the padded one"
        moved += match[0][:2] != (4, 4)
        flipped += match[0][2]
    assert moved > 0.7 * len(x) and 0.3 * len(x) < flipped < 0.7 * len(x)


def test_series_shift_along_their_steps_mirror_in_time_and_lose_a_window():
    x = np.random.default_rng(0).normal(size=(64, 20, 2)).astype("float32")
    y = np.arange(64) % 2
    data = kr.Dataset("series", x, y, x[:0], y[:0], x, y, ("a", "b"), augmentation={})
    plain = data.normalize(x)
    padded = np.pad(plain, [(0, 0), (3, 3), (0, 0)])
    pipeline = kr.make_pipeline(data, batch_size=64, shuffle=False, translate=3, flip=True)
    ((shifted, _),) = _batches(pipeline)
    moved = mirrored = 0
    for series, source in zip(shifted, padded, strict=True):
        views = {(d, f): source[d : d + 20][::-1] if f else source[d : d + 20]
                 for d in range(7) for f in (0, 1)}  # fmt: skip
        match = [k for k, v in views.items() if np.allclose(v, series, atol=1e-5)]
        assert match, "each series is a window of the padded one, its channels kept apart"
        moved += match[0][0] != 3
        mirrored += match[0][1]
    assert moved > 0.6 * len(x) and 0.2 * len(x) < mirrored < 0.8 * len(x)
    pipeline = kr.make_pipeline(data, batch_size=64, shuffle=False, translate=0, cutout=5)
    ((erased, _),) = _batches(pipeline)
    assert np.mean(np.all(erased == 0, axis=2).any(axis=1)) > 0.9
    for series, source in zip(erased, plain, strict=True):
        zeroed = np.flatnonzero(np.all(series == 0, axis=1))
        np.testing.assert_allclose(np.delete(series, zeroed, 0), np.delete(source, zeroed, 0))
        assert len(zeroed) <= 5 and np.all(np.diff(zeroed) == 1), "one window, all channels"


def test_alternating_flips_mirror_each_image_every_other_epoch(data_dir):
    data = kr.load_dataset("cifar10", data_dir)
    plain = (data.x_train.astype("float32") - data.mean) / data.std

    def rows(image):  # the pixel sums of each row: the same in the mirror image
        return tuple(np.rint(image * data.std + data.mean).sum(axis=(1, 2)).astype(int))

    index_of = {rows(image): i for i, image in enumerate(plain)}
    assert len(index_of) == len(plain)

    def flipped_by_index(pipeline):  # shuffled: find each image's index by its rows
        flipped = np.zeros(len(plain), bool)
        for image in np.concatenate([x for x, _ in _batches(pipeline)]):
            index = index_of[rows(image)]
            flipped[index] = not np.allclose(image, plain[index], atol=1e-5)
            assert np.allclose(image, plain[index][:, ::-1] if flipped[index] else plain[index],
                               atol=1e-5)  # fmt: skip
        return flipped

    pipeline = kr.make_pipeline(data, batch_size=32, seed=1, flip="alternate", translate=0)
    first, second, third = (flipped_by_index(pipeline) for _ in range(3))
    assert 0.3 * len(plain) < first.sum() < 0.7 * len(plain)
    np.testing.assert_array_equal(second, ~first)
    np.testing.assert_array_equal(third, first)
    again = kr.make_pipeline(data, batch_size=32, seed=1, flip="alternate", translate=0)
    np.testing.assert_array_equal(flipped_by_index(again), first)
    with pytest.raises(ValueError, match="`flip`.*'alternate'"):
        kr.make_pipeline(data, flip="sometimes")


def test_mnist_is_neither_flipped_nor_cropped(data_dir):
    data = kr.load_dataset("mnist", data_dir)
    ((x, _),) = _batches(kr.make_pipeline(data, batch_size=1000, shuffle=False))
    np.testing.assert_allclose(x, (data.x_train - data.mean) / data.std, rtol=1e-5, atol=1e-5)


def test_shuffling_is_seeded_and_changes_every_epoch(data_dir):
    data = kr.load_dataset("mnist", data_dir)
    pipeline = kr.make_pipeline(data, batch_size=1000, seed=5)
    first, second = (_batches(pipeline)[0][1].argmax(1) for _ in range(2))
    again = _batches(kr.make_pipeline(data, batch_size=1000, seed=5))[0][1].argmax(1)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)
    assert sorted(first) == sorted(data.y_train)


def test_a_pipeline_draws_each_epoch_from_its_number(data_dir):
    data = kr.load_dataset("cifar10", data_dir)
    options = {"batch_size": 64, "seed": 3, "flip": "alternate"}
    pipeline = kr.make_pipeline(data, **options)
    counted = [_batches(pipeline) for _ in range(3)]  # without `epoch`: passes from 0
    epoch = tf.Variable(2, dtype=tf.int64)
    chosen = kr.make_pipeline(data, **options, epoch=epoch)
    for epoch_number in (2, 1):  # read afresh at each pass
        epoch.assign(epoch_number)
        for (x, y), (x_counted, y_counted) in zip(
            _batches(chosen), counted[epoch_number], strict=True
        ):
            np.testing.assert_array_equal(x, x_counted)
            np.testing.assert_array_equal(y, y_counted)
    assert not np.array_equal(counted[1][0][0], counted[2][0][0])


def test_pipeline_cardinality_is_known(data_dir):
    data = kr.load_dataset("mnist", data_dir)
    assert int(kr.make_pipeline(data, batch_size=64).cardinality()) == -(-540 // 64)
