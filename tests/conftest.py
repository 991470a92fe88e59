import contextlib
import fcntl
import io
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# On JAX, XLA compiles every train step, and every initializer for each weight's shape,
# before it runs: at LLVM's level 0 the families' tiny steps compile in 0.6x the time (they
# run for two steps, where optimisation cannot pay), and a file another backend saved loads
# in a fifth. Set for every run: the tests' JAX subprocesses read it too.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_residual as kr  # noqa: E402

# One preset for every structural variant: each shortcut option, block, stem, `stride_at`,
# groups, SE, dropout, dense blocks and keras.applications compatibility.
FAMILIES = (
    "resnet20", "plain20", "se_resnet20", "highway20", "preact_resnet50", "wrn16_8",
    "resnext29_8x64d", "densenet_bc100_k12", "resnet18", "resnet50d", "resnext50_32x4d",
    "resnet50_keras", "resnet50v2_keras", "fast_cifar_s",
)  # fmt: skip


def pytest_collection_modifyitems(items):
    """Slow tests first: pytest-xdist's workers, handed one test at a time (`--maxschedchunk`
    in pyproject.toml), share them out while the quick ones fill the gaps, instead of one
    worker ending the run alone on a long test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def run_probe(probe: str, folder, **environment) -> None:
    """Run the Python source `probe` in a fresh interpreter with `sys.argv[1] = folder` and
    `environment` added; fail the test with its stderr if it fails."""
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **environment}
    command = [sys.executable, "-c", probe, str(folder)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def shrunk(name: str, widest: int = 32, deepest: int = 2):
    """Preset `name`'s spec at 32x32x3 (a series preset: 32 steps of 3) and 4 classes,
    narrowed to at most `widest` filters (DenseNets: growth rate 4), cut to its first and
    last stages (the others repeat the last's structure at other widths) and to at most
    `deepest` blocks a stage (DenseNets: units a block), structure kept (at 2, each stage's
    first block and one that repeats): quick to build, train and save."""
    spec, ends = kr.get_spec(name), {}
    if isinstance(spec, kr.DenseNetSpec):
        spec = spec.scaled(4 / spec.growth_rate)
    else:
        spec = spec.scaled(min(1.0, widest / max(spec.filters)))
        ends = {k: (v[0], v[-1]) for k in ("filters", "strides", "dilations")
                if (v := getattr(spec, k)) is not None}  # fmt: skip
    depths = tuple(min(d, deepest) for d in (spec.depths[0], spec.depths[-1]))
    spec = spec.replace(depths=depths, **ends)
    return spec.replace(input_shape=(32,) * spec.rank + (3,), num_classes=4)


def assert_same_outputs(model, other, x) -> None:
    """`model` and `other` (say, `model` reloaded) give the same outputs on `x`, called
    eagerly: tracing predict() costs more than these small inputs do."""
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(other(x, training=False)),
    )


def write_ts(path, series, labels, *, classes=None, header=None):
    """A `.ts` file of `series` (lists of (steps, dims) arrays) and `labels`."""
    dims = series[0].shape[1]
    lines = header or [
        f"@problemName {path.stem}",
        "@timeStamps false",
        f"@univariate {'true' if dims == 1 else 'false'}",
        f"@dimensions {dims}",
        f"@classLabel true {' '.join(classes or sorted(set(labels)))}",
        "@data",
    ]
    for values, label in zip(series, labels, strict=True):
        fields = [",".join(f"{v:.6f}" for v in column) for column in values.T]
        lines.append(":".join([*fields, label]))
    path.write_text("\n".join(lines) + "\n")
    return path


def toy_series(count, steps, dims=1, seed=0, labels=("up", "down")):
    """Rising or falling noisy ramps: a class told by shape, levels random."""
    rng = np.random.default_rng(seed)
    ys = [labels[i % len(labels)] for i in range(count)]
    ramp = np.linspace(-1, 1, steps)[:, None]
    series = [
        (ramp if y == labels[0] else -ramp) * rng.uniform(1, 3) + rng.normal(0, 0.1, (steps, dims))
        + rng.uniform(-5, 5)
        for y in ys
    ]  # fmt: skip
    return series, ys


def write_dataset(folder, name="Toy", count=24, steps=32, dims=1, test_steps=None):
    folder.mkdir(parents=True, exist_ok=True)
    write_ts(folder / f"{name}_TRAIN.ts", *toy_series(count, steps, dims))
    write_ts(folder / f"{name}_TEST.ts", *toy_series(count, test_steps or steps, dims, seed=1))
    return folder


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with a fixed seed, float32 policy and an empty graph."""
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")
    # Not clear_session's gc.collect(): 0.2-1 s after every test, a fifth of the suite's time.
    keras.backend.clear_session(free_memory=False)


def learnable_images(count, shape, seed=0):
    """uint8 images whose label (0..9) sets the period (2..6) and orientation of stripes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count).astype("uint8")
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    images = np.empty((count, *shape), "uint8")
    for i, label in enumerate(labels):
        period, axis = 2 + label // 2, (rows, cols)[label % 2]
        stripes = ((axis + rng.integers(0, period)) % period) < period / 2
        noisy = stripes * 160 + rng.integers(0, 80, shape[:2])
        images[i] = (noisy[..., None] if len(shape) == 3 else noisy).astype("uint8")
    return images, labels


def write_npz(path, shape, train=600, test=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    x_train, y_train = learnable_images(train, shape, seed=1)
    x_test, y_test = learnable_images(test, shape, seed=2)
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def shared_folder(tmp_path_factory, name: str, make) -> Path:
    """The folder `name` that `make(folder)` fills, made once a test run: pytest-xdist's
    workers share it (the first to ask makes it under a lock, the others wait for it, as
    pytest-xdist's docs show for a costly session fixture)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's own
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
        if not done.exists():  # (a worker that failed to make it may have left a part)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            make(folder)
            done.touch()
    return folder


def _write_data_dir(root):
    write_npz(root / "mnist" / "mnist.npz", (28, 28))
    write_npz(root / "cifar10" / "cifar10.npz", (32, 32, 3))
    write_dataset(root / "ucr" / "GunPoint", name="GunPoint", count=32, steps=48)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A data directory in the documented layout with small learnable MNIST/CIFAR-10, and a
    time-series folder where the notebooks look for the archive's GunPoint (synthetic
    ramps of its length). Read it only: the workers share it."""
    return shared_folder(tmp_path_factory, "datasets", _write_data_dir)


# The finished search that tests of results, reports, resumption and damaged state files
# share (each search costs tens of seconds): three trials of tiny networks on half of MNIST.
FINISHED_SEARCH = {"max_trials": 3, "data_fraction": 0.5, "width": [4, 6, 8, 10],
                   "blocks_per_stage": 1}  # fmt: skip


@pytest.fixture(scope="session")
def finished_search(data_dir, tmp_path_factory):
    """`FINISHED_SEARCH` run once a test run: its folder `out`, what it `printed` and its
    `result`. Read it only; a test that writes to the folder takes `finished_copy`."""
    from keras_residual.search import run_search

    def search(folder):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            result = run_search("mnist", folder / "search", data_dir=data_dir, verbose=0,
                                isolate_trials=False, **FINISHED_SEARCH)  # fmt: skip
        (folder / "printed.txt").write_text(printed.getvalue())
        (folder / "result.json").write_text(json.dumps(result))

    folder = shared_folder(tmp_path_factory, "finished", search)
    result = json.loads((folder / "result.json").read_text())
    return SimpleNamespace(out=folder / "search", printed=(folder / "printed.txt").read_text(),
                           result=result)  # fmt: skip


@pytest.fixture
def finished_copy(finished_search, tmp_path):
    """A copy of the finished search's folder, to change."""
    return Path(shutil.copytree(finished_search.out, tmp_path / "search"))
