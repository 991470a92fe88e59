"""Build time and parameter count of every preset.

Run: python benchmarks/build_presets.py [--include-imagenet]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
from _report import emit  # noqa: E402

import keras_residual as kr  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--include-imagenet", action="store_true", help="also 224x224 presets")
    args = parser.parse_args()
    rows = []
    for name in kr.list_presets():
        imagenet = getattr(kr.get_spec(name), "stem", "cifar") != "cifar"
        if imagenet and not args.include_imagenet:
            continue
        keras.backend.clear_session()
        start = time.perf_counter()
        model = kr.build(name)
        seconds = time.perf_counter() - start
        trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
        rows.append(
            {
                "preset": name,
                "family": type(kr.get_spec(name)).__name__,
                "params": model.count_params(),
                "trainable": trainable,
                "build_s": round(seconds, 3),
            }
        )
    emit("preset build time", rows, keras=keras.__version__)


if __name__ == "__main__":
    main()
