"""The CIFAR-10 copy the toolkit loads, written in airbench's format, to measure what the
strongest known recipe reaches on it (its ceiling at airbench's sample efficiency).

airbench (github.com/KellerJordan/cifar10-airbench, `legacy/airbench94.py` and
`legacy/airbench96.py`) reads `cifar10/train.pt` and `cifar10/test.pt` (uint8 NHWC images,
integer labels) from its working directory and downloads the original CIFAR-10 only when
they are missing. This writes them from `load_dataset("cifar10")`, the same pixels the
toolkit's benchmarks train on. Needs PyTorch (benchmark-only) and, for airbench, a CUDA GPU.

Run: python benchmarks/airbench_data.py --out cifar10   # then, beside it: python airbench94.py
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import torch  # noqa: E402

import keras_residual as kr  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--data-dir", help="default: $KERAS_RESIDUAL_DATA or keras.datasets")
parser.add_argument("--out", default="cifar10")


def main() -> None:
    args = parser.parse_args()
    data = kr.load_dataset("cifar10", args.data_dir, validation_split=0.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, images, labels in (
        ("train", data.x_train, data.y_train),
        ("test", data.x_test, data.y_test),
    ):
        torch.save(
            {
                "images": torch.tensor(images),
                "labels": torch.tensor(labels.astype("int64")),
                "classes": list(data.class_names),
            },
            out / f"{split}.pt",
        )
        checksum = int(images.sum(dtype="int64"))
        print(f"{out / f'{split}.pt'}: {len(labels):,} images, pixel sum {checksum}")


if __name__ == "__main__":
    main()
