"""Training throughput of ResNet-20 (32x32x3, batch 128): toolkit vs hand-written Keras.

(a) the toolkit as a user gets it: `resnet_cifar` + `compile_model` + `make_pipeline` (with
the jobs' `--dtype auto` policy: bfloat16 compute on CPUs that do it natively);
(b) a straightforward hand-written functional ResNet-20 trained with `model.fit` on a
`tf.data` of arrays; (c) that same model fed by the toolkit's pipeline, which separates the
tf.data stall that (b) suffers from the speed of the model itself; (d) the toolkit in float32,
which separates the gain of bfloat16 from the rest. All run alternately in one process;
medians of the rounds are reported with the fraction of this CPU's measured float32 matmul
peak (training FLOPs ~ 3 x forward FLOPs). Peak memory comes from one child process per path.

Run: python benchmarks/throughput.py [--rounds 5 --steps 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from _data import random_dataset  # noqa: E402
from _report import emit  # noqa: E402

import keras_residual as kr  # noqa: E402

BATCH, SHAPE = 128, (32, 32, 3)


def reference_resnet20() -> keras.Model:
    """What a typical user writes: conv-BN-ReLU blocks, Add, 1x1 projections."""
    layers = keras.layers

    def block(x, filters, strides):
        shortcut = x
        y = layers.Conv2D(filters, 3, strides, padding="same", use_bias=False)(x)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        if strides != 1 or x.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides, use_bias=False)(x)
            shortcut = layers.BatchNormalization()(shortcut)
        return layers.Activation("relu")(layers.Add()([y, shortcut]))

    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.Activation("relu")(layers.BatchNormalization()(x))
    for filters, strides in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            x = block(x, filters, strides if i == 0 else 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


def toolkit_path(data, steps, dtype="auto"):
    model = kr.resnet_cifar(20, shortcut="B", dtype=dtype)
    kr.training.compile_model(model, kr.get_recipe("he2016"), steps, 1)
    return model, kr.make_pipeline(data, "train", BATCH).take(steps)


def toolkit_float32_path(data, steps):
    return toolkit_path(data, steps, dtype="float32")


def reference_path(data, steps):
    model = reference_resnet20()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    x = data.x_train.astype("float32") / 255.0
    dataset = tf.data.Dataset.from_tensor_slices((x, data.y_train)).shuffle(4096).batch(BATCH)
    return model, dataset.take(steps).prefetch(tf.data.AUTOTUNE)


def reference_model_toolkit_data(data, steps):
    """The reference model fed by the toolkit's pipeline: its speed without the tf.data stall."""
    model = reference_resnet20()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "categorical_crossentropy")
    return model, kr.make_pipeline(data, "train", BATCH).take(steps)


PATHS = {
    "toolkit": toolkit_path,
    "reference": reference_path,
    "reference_without_stall": reference_model_toolkit_data,
    "toolkit_float32": toolkit_float32_path,
}


def matmul_peak_gflops(n: int = 2048, repeats: int = 20, dtype=tf.float32) -> float:
    a, b = (tf.cast(tf.random.normal((n, n)), dtype) for _ in range(2))
    tf.linalg.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def time_fit(model, dataset, steps) -> float:
    start = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0)
    return steps * BATCH / (time.perf_counter() - start)


def child_peak_memory(name: str, steps: int) -> float:
    """Peak RSS (MiB) of a fresh process that builds and trains one path.

    Read from VmHWM: `ru_maxrss` would carry this process's peak across the exec."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import throughput as t; "
        f"m, d = t.PATHS[{name!r}](t.random_dataset('cifar10', {steps * BATCH}), {steps}); "
        "m.fit(d, verbose=0); "
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return int(output.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    data = random_dataset("cifar10", args.steps * BATCH)
    built = {name: make(data, args.steps) for name, make in PATHS.items()}
    for model, dataset in built.values():  # trace and warm up
        model.fit(dataset.take(3), verbose=0)
    rates = {name: [] for name in PATHS}
    for _ in range(args.rounds):
        for name, (model, dataset) in built.items():
            rates[name].append(time_fit(model, dataset, args.steps))
    peak = matmul_peak_gflops()
    flops = kr.count_flops(built["toolkit"][0])
    rows = []
    for name, (model, _) in built.items():
        rate = statistics.median(rates[name])
        achieved = 3 * flops * rate / 1e9
        rows.append(
            {
                "path": name,
                "params": model.count_params(),
                "dtype_policy": model.dtype_policy.name,
                "images_per_s": round(rate, 1),
                "rounds": [round(r, 1) for r in rates[name]],
                "train_gflops": round(achieved, 1),
                "fraction_of_peak": round(achieved / peak, 3),
                "peak_rss_mib": round(child_peak_memory(name, 10), 0),
            }
        )
    ratio = rows[0]["images_per_s"] / rows[1]["images_per_s"]
    compute_ratio = rows[0]["images_per_s"] / rows[2]["images_per_s"]
    precision_ratio = rows[0]["images_per_s"] / rows[3]["images_per_s"]
    emit(
        "ResNet-20 training throughput",
        rows,
        ratio_toolkit_over_reference=round(ratio, 3),
        ratio_toolkit_over_reference_without_stall=round(compute_ratio, 3),
        ratio_toolkit_over_toolkit_float32=round(precision_ratio, 3),
        matmul_peak_gflops=round(peak, 1),
        matmul_peak_gflops_bfloat16=round(matmul_peak_gflops(dtype=tf.bfloat16), 1),
        forward_mflops_per_image=round(flops / 1e6, 1),
        batch=BATCH,
        cpus=os.cpu_count(),
        parent_peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    )


if __name__ == "__main__":
    main()
