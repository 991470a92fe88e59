"""How well does a time-budgeted search's cost model forecast the networks it has not timed?

Times one short epoch of every network of the CIFAR-10 default search space (or `--widths`)
exactly as a trial times itself (`ResidualHyperModel.fit`: seconds per training image after
the first step), on random images of CIFAR-10's shape under `--dtype`. Then, for each
network, asks the search's `CostModel` for its seconds per image from the networks of
narrower widths only (what a search knows once it has timed those) and from the narrowest
width only (what it knows after its first trials), and reports each forecast over the
measurement: above 1, the search thinks the network slower than it is and may skip it.

Run: python benchmarks/search_cost_model.py --steps 3
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402
from _report import emit  # noqa: E402

from keras_residual.search import ResidualHyperModel  # noqa: E402
from keras_residual.search.budget import CostModel, Timing  # noqa: E402
from keras_residual.search.space import SE_RATIO  # noqa: E402


def measure(hypermodel, width: int, blocks: int, se: bool, steps: int) -> dict:
    """One epoch of `steps` + 1 batches of the network, timed as a search's trial."""
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    hp.values.update(width=width, blocks_per_stage=blocks, se_ratio=SE_RATIO if se else 0.0)
    batch = hp.values["batch_size"]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch * (steps + 1), 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, len(x))
    record = hypermodel.fit(
        hp, hypermodel.build(hp), x, y, epochs=1, validation_data=(x[:batch], y[:batch]), verbose=0
    )
    return {"width": width, "blocks": blocks, "se": se, "flops": record["flops"],
            "per_image": record["seconds_per_image"]}  # fmt: skip


def forecast(timed: list[dict], flops: float) -> float:
    """The `CostModel`'s seconds per image at `flops` from the `timed` networks (at least one)."""
    cost = CostModel.from_timings((r["flops"], Timing(0.0, r["per_image"])) for r in timed)
    return cost.timing(flops).per_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="32,64,96,128")
    parser.add_argument("--steps", type=int, default=3, help="timed batches per network")
    parser.add_argument("--dtype", default="mixed_bfloat16")
    args = parser.parse_args()
    keras.config.set_dtype_policy(args.dtype)
    widths = sorted(int(w) for w in args.widths.split(","))  # widths[0]: the narrowest
    hypermodel = ResidualHyperModel((32, 32, 3), 10, dataset="cifar10")
    measured = []
    for width, blocks, se in itertools.product(widths, (1, 2), (False, True)):
        measured.append(measure(hypermodel, width, blocks, se, args.steps))
        print(measured[-1], flush=True)
    rows = []
    for r in measured:
        row = {
            "width": r["width"],
            "blocks": r["blocks"],
            "se": r["se"],
            "mflops": round(r["flops"] / 1e6, 1),
            "ms_per_image": round(1e3 * r["per_image"], 3),
        }
        for name, known in (
            ("narrower", [m for m in measured if m["width"] < r["width"]]),
            ("narrowest", [m for m in measured if m["width"] == widths[0]]),
        ):
            estimate = forecast(known, r["flops"]) if r["width"] > widths[0] else None
            row[f"over_from_{name}"] = estimate and round(estimate / r["per_image"], 2)
        rows.append(row)
    emit("Search cost model: forecast over measured seconds per image", rows,
         dtype=args.dtype, steps=args.steps)  # fmt: skip


if __name__ == "__main__":
    main()
