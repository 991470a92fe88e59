"""Search results from a keras-tuner project directory: table, CSV/JSON, Pareto plots."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from keras_residual._files import atomic_path, write_text_atomically
from keras_residual._plots import new_figure
from keras_residual.presets import PRESETS
from keras_residual.search.state import StateError, read_json
from keras_residual.search.trials import HALFWAY, NOT_TRAINED, STOPPED

RECORD_METRICS = (
    "params",
    "flops",
    "epochs",
    "train_examples",
    "fit_seconds",
    "trial_seconds",
    "started_at",
    "finished_at",
    HALFWAY,
)
OBJECTIVES = ("val_accuracy", "val_loss")
SPEC_FILE = "spec.json"  # written by the toolkit's tuners beside each trial.json


def failure_reason(message: str | None) -> str:
    """Why a trial failed: the last line of its keras-tuner message (a traceback)."""
    lines = (message or "").strip().splitlines()
    return lines[-1] if lines else ""


def _best(metric: dict):
    """Best recorded value of a keras-tuner metric history (stored as JSON)."""
    observations = metric.get("observations") or []
    values = [v for o in observations for v in o.get("value", [])]
    if not values:
        return None
    return max(values) if metric.get("direction") == "max" else min(values)


def collect_rows(project_dir: str | Path) -> list[dict]:
    """One row per trial: `trial_id`, `status`, `reason`, hyperparameters, metrics and
    `spec`, the trial's architecture as `ResNetSpec.to_dict()` (None if not recorded).

    A trial refused before it trained has status `rejected` (over a constraint) or
    `skipped` (too slow for the time left), one stopped halfway, behind the preset the
    search started from, `stopped`; one whose `trial.json` cannot be read is listed with
    status `unreadable` and the file in `reason` (`--resume` reruns it)."""
    rows = []
    for path in sorted(Path(project_dir).glob("trial_*/trial.json")):
        try:
            state = read_json(path, "the trial's state")
        except StateError as error:
            rows.append(_unreadable_row(path, error))
            continue
        metrics = state.get("metrics", {}).get("metrics", {})
        row = {"trial_id": state["trial_id"], "status": state["status"].lower()}
        row["reason"] = failure_reason(state.get("message")) if row["status"] != "completed" else ""
        for status, words in NOT_TRAINED.items():  # failed before training, on purpose
            if row["status"] == "failed" and words in row["reason"]:
                row["status"] = status
        row |= state["hyperparameters"]["values"]
        for name in (*OBJECTIVES, *RECORD_METRICS):
            row[name] = _best(metrics[name]) if name in metrics else None
        for name in ("params", "flops", "epochs", "train_examples"):
            row[name] = None if row[name] is None else int(row[name])
        if STOPPED in metrics:
            row["status"] = "stopped"
            row["reason"] = (
                f"halfway through its trial, {row[HALFWAY]:.4f} against the preset's "
                f"{_best(metrics[STOPPED]):.4f} there: stopped"
            )
        spec = path.with_name(SPEC_FILE)
        try:
            row["spec"] = json.loads(spec.read_text()) if spec.exists() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            row["spec"] = None
        rows.append(row)
    return rows


def halfway_correlation(rows: list[dict]) -> tuple[int, float | None]:
    """How well a trial's score halfway through predicts its score at its end: the
    trials that trained to their end with both, and the rank correlation (Spearman's)
    between the two over them (None for fewer than 3, or scores all alike).

    Example:
    >>> rows = [{"status": "completed", "halfway_val_accuracy": h, "val_accuracy": v}
    ...         for h, v in [(0.4, 0.6), (0.3, 0.5), (0.5, 0.55), (0.2, 0.3)]]
    >>> halfway_correlation(rows)
    (4, 0.8)
    """
    pairs = [
        (r[HALFWAY], r["val_accuracy"])
        for r in rows
        if r["status"] == "completed" and r.get(HALFWAY) is not None and r["val_accuracy"]
    ]
    if len(pairs) < 3 or any(len(set(column)) == 1 for column in zip(*pairs, strict=True)):
        return len(pairs), None
    return len(pairs), round(spearman(*zip(*pairs, strict=True)), 4)


def spearman(a, b) -> float:
    """Spearman's rank correlation of `a` and `b`: Pearson's on their ranks, ties given
    their mean rank.

    Example:
    >>> spearman([1, 2, 3], [10, 30, 20])
    0.5
    """
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def _ranks(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    ranks = np.empty(len(values))
    ranks[values.argsort(kind="stable")] = np.arange(len(values))
    for value in np.unique(values):
        ranks[values == value] = ranks[values == value].mean()
    return ranks


def _unreadable_row(path: Path, error: StateError) -> dict:
    row = {"trial_id": path.parent.name.removeprefix("trial_"), "status": "unreadable"}
    row["reason"] = f"{str(error).rstrip('.')}; --resume reruns this trial"
    return row | dict.fromkeys((*OBJECTIVES, *RECORD_METRICS, "spec"))


def pareto_front(rows: list[dict]) -> list[dict]:
    """Completed rows no other row beats on both accuracy (higher) and params (fewer)."""
    done = [r for r in rows if r["val_accuracy"] is not None and r["params"] is not None]
    return [
        r
        for r in done
        if not any(
            o["val_accuracy"] >= r["val_accuracy"]
            and o["params"] <= r["params"]
            and (o["val_accuracy"], -o["params"]) != (r["val_accuracy"], -r["params"])
            for o in done
        )
    ]


def _columns(rows: list[dict]) -> list[str]:
    columns = ["trial_id", "status"]
    for row in rows:
        columns += [k for k in row if k not in columns and k not in (*OBJECTIVES, *RECORD_METRICS)]
    columns.remove("reason")
    columns.remove("spec")
    return [*columns, *RECORD_METRICS, *OBJECTIVES, "reason", "spec"]


def write_results(
    rows: list[dict],
    out_dir: str | Path,
    extra: dict | None = None,
    max_params: int | None = None,
) -> None:
    """Write `results.csv`, `results.json` and the two plots into `out_dir` (the Pareto
    plot marks `max_params`), each atomically.

    `results.json` keeps every section of the one it replaces (the search's `config`, its
    `best` model's test accuracy) that `extra` does not give anew.
    """
    out = Path(out_dir)
    columns = _columns(rows) if rows else ["trial_id", "status"]
    with atomic_path(out / "results.csv") as temporary, open(temporary, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**r, "spec": json.dumps(r["spec"], separators=(",", ":"))} for r in rows)
    front = {r["trial_id"] for r in pareto_front(rows)}
    document = {**_kept_sections(out / "results.json"), **(extra or {})}
    document = {"trials": rows, "pareto_front": sorted(front), **document}
    write_text_atomically(out / "results.json", json.dumps(document, indent=2, default=str))
    if any(r["val_accuracy"] is not None for r in rows):
        plot_results(rows, out, max_params)


def _kept_sections(path: Path) -> dict:
    """The sections of the results file `path` beside its trials (none if it is missing or
    unreadable: the trials it lists are rebuilt from the trials' own files)."""
    try:
        previous = read_json(path, "the search's results")
    except StateError:
        return {}
    return {k: v for k, v in previous.items() if k not in ("trials", "pareto_front")}


def plot_results(rows: list[dict], out_dir: str | Path, max_params: int | None = None) -> None:
    """`pareto.png` (accuracy vs parameters, `max_params` marked) and `progress.png` (best
    so far vs time)."""
    figures = {"pareto.png": pareto_figure(rows, max_params), "progress.png": progress_figure(rows)}
    for name, figure in figures.items():
        if figure is not None:
            with atomic_path(Path(out_dir) / name) as temporary:
                figure.savefig(temporary, dpi=100)


def _scored(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["val_accuracy"] is not None and r["params"] is not None]


def pareto_figure(rows: list[dict], max_params: int | None = None):
    """Validation accuracy against parameter count, the Pareto front (and the parameter
    constraint `max_params`) marked."""
    import matplotlib.ticker

    done = _scored(rows)
    front = sorted(pareto_front(done), key=lambda r: r["params"])
    figure, axis = new_figure()
    axis.scatter([r["params"] for r in done], [r["val_accuracy"] for r in done], label="trials")
    axis.plot(
        [r["params"] for r in front],
        [r["val_accuracy"] for r in front],
        "r-o",
        label="Pareto front",
    )
    if max_params:
        axis.axvline(max_params, color="grey", linestyle="--", label="max_params")
    axis.set(xscale="log", xlabel="parameters", ylabel="best validation accuracy")
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.set_title("Accuracy vs size")
    axis.legend()
    figure.tight_layout()
    return figure


def progress_figure(rows: list[dict]):
    """Best validation accuracy so far against minutes since the first trial (None if
    no finished trial has timings)."""
    timed = sorted((r for r in _scored(rows) if r["finished_at"]), key=lambda r: r["finished_at"])
    if not timed:
        return None
    start = min(r["started_at"] or r["finished_at"] for r in timed)
    elapsed = [(r["finished_at"] - start) / 60 for r in timed]
    best_so_far = np.maximum.accumulate([r["val_accuracy"] for r in timed])
    figure, axis = new_figure()
    axis.step(elapsed, best_so_far, where="post", marker="o")
    axis.set(xlabel="minutes since the first trial", ylabel="best validation accuracy")
    axis.set_title("Best so far")
    figure.tight_layout()
    return figure


def varying_names(rows: list[dict], names: list[str]) -> list[str]:
    """Those of `names` whose values differ between `rows`."""
    return [n for n in names if len({str(r.get(n)) for r in rows}) > 1]


def format_table(rows: list[dict], limit: int | None = None) -> str:
    """A text table of the trials, best first; hyperparameters shown where they vary, and
    the preset a trial trained (the baseline rows) where one did."""
    if not rows:
        return "(no trials)"
    hidden = (*RECORD_METRICS, *OBJECTIVES, "reason", "spec")
    hp_names = [c for c in _columns(rows)[2:] if c not in hidden and not c.startswith("tuner/")]
    varying = varying_names(rows, hp_names) or hp_names[:2]
    fidelity = [n for n in ("epochs", "train_examples") if len({r.get(n) for r in rows}) > 1]
    rungs = any(r.get("tuner/bracket") is not None for r in rows)
    presets = {r["trial_id"]: _preset(r) for r in rows}  # the baseline rows: a preset's point
    shown = any(presets.values())
    header = ["trial", "status", *(["preset"] if shown else [])]
    header += [*(["rung", "from"] if rungs else []), *varying]
    header += [{"train_examples": "images"}.get(n, n) for n in fidelity]
    header += ["params", "MFLOPs", "seconds", "val_acc"]
    ranked = sorted(rows, key=lambda r: -(r["val_accuracy"] or -1))[:limit]
    lines = []
    for r in ranked:
        seconds = r["trial_seconds"]
        lines.append(
            [
                r["trial_id"],
                r["status"],
                *([presets[r["trial_id"]] or "-"] if shown else []),
                *((_rung(r), r.get("tuner/trial_id") or "-") if rungs else ()),
                *(_short(r.get(n)) for n in varying),
                *(_short(r.get(n)) for n in fidelity),
                f"{r['params']:,.0f}" if r["params"] is not None else "-",
                f"{r['flops'] / 1e6:.1f}" if r["flops"] is not None else "-",
                f"{seconds:.0f}" if seconds is not None else "-",
                f"{r['val_accuracy']:.4f}" if r["val_accuracy"] is not None else "-",
            ]
        )
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]

    def render(cells):
        return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True))

    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])


def _preset(row: dict) -> str | None:
    """The preset whose network the row's trial trained, if any (its spec's name, with the
    size it computes at: `fast_cifar_s_at32`)."""
    name = (row.get("spec") or {}).get("name")
    return name if name and re.sub(r"_at\d+$", "", name) in PRESETS else None


def _short(value) -> str:
    if value is None:  # a skipped or rejected trial never trained: no epochs, no images
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _rung(row: dict) -> str:
    """Hyperband's bracket and round of a trial: `b1/r0`."""
    bracket, round_ = row.get("tuner/bracket"), row.get("tuner/round")
    return "-" if bracket is None else f"b{bracket}/r{round_}"


def promotion_ladder(rows: list[dict]) -> str:
    """Hyperband's ladder, bracket by bracket and round by round: each trial's epochs,
    validation accuracy and the trial it continued (`<-`); "" without Hyperband rows.

    Example:
    >>> rows = [
    ...     {"trial_id": "0", "tuner/bracket": 1, "tuner/round": 0, "tuner/trial_id": None,
    ...      "tuner/epochs": 1, "val_accuracy": 0.9, "status": "completed"},
    ...     {"trial_id": "1", "tuner/bracket": 1, "tuner/round": 1, "tuner/trial_id": "0",
    ...      "tuner/epochs": 3, "val_accuracy": 0.95, "status": "completed"},
    ... ]
    >>> print(promotion_ladder(rows))
    Hyperband promotion ladder (trial <- the trial it continued: val_accuracy)
    bracket 1
      round 0, 1 epochs: 0 0.9000
      round 1, 3 epochs: 1<-0 0.9500
    """
    laddered = [r for r in rows if r.get("tuner/bracket") is not None]
    if not laddered:
        return ""
    lines = ["Hyperband promotion ladder (trial <- the trial it continued: val_accuracy)"]
    brackets = sorted({r["tuner/bracket"] for r in laddered}, reverse=True)
    for bracket in brackets:
        lines.append(f"bracket {bracket}")
        in_bracket = [r for r in laddered if r["tuner/bracket"] == bracket]
        for round_ in sorted({r["tuner/round"] for r in in_bracket}):
            trials = sorted(
                (r for r in in_bracket if r["tuner/round"] == round_),
                key=lambda r: -(r["val_accuracy"] or -1),
            )
            cells = [
                r["trial_id"]
                + (f"<-{r['tuner/trial_id']}" if r.get("tuner/trial_id") else "")
                + (f" {r['val_accuracy']:.4f}" if r["val_accuracy"] is not None else "")
                + ("" if r["status"] == "completed" else f" {r['status']}")
                for r in trials
            ]
            epochs = trials[0]["tuner/epochs"]
            lines.append(f"  round {round_}, {epochs} epochs: {', '.join(cells)}")
    return "\n".join(lines)
