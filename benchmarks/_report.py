"""Shared output for benchmark scripts: a JSON record in `benchmarks/results/` (with the date,
commit, CPU and command), the same JSON on one line, then a Markdown table.

`python benchmarks/summarize.py` rebuilds `benchmarks/results/README.md` from the records.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RESULTS_ENV = "KERAS_RESIDUAL_RESULTS"  # another folder for the records; "-" writes none


def cpu_flags() -> list[str]:
    """The CPU features that decide the speed of training here (bfloat16 and AMX)."""
    wanted = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2"}
    with open("/proc/cpuinfo") as cpuinfo:
        line = next((row for row in cpuinfo if row.startswith("flags")), "")
    return sorted(wanted & set(line.split()))


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        line = next((row for row in cpuinfo if row.startswith("model name")), ":unknown")
    return line.split(":", 1)[1].strip()


def busy_seconds() -> float:
    """CPU seconds all processes on this machine have used (user, nice, system, irq)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:8]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return busy / os.sysconf("SC_CLK_TCK")


def other_cpu_seconds(run):
    """`run()`'s result and the CPU seconds other processes took while it ran (this
    process's own CPU time taken out of `busy_seconds`)."""
    busy, own = busy_seconds(), time.process_time()
    result = run()
    return result, max(0.0, (busy_seconds() - busy) - (time.process_time() - own))


def children_seconds() -> float:
    """CPU seconds (user and system) this process's finished children have used: subtracted
    from `busy_seconds`, what the rest of the machine used meanwhile."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def provenance() -> dict:
    """When, on what code and machine, and by which command a measurement was taken."""
    root = Path(__file__).resolve().parent.parent

    def git(*args):
        run = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return run.stdout.strip() if run.returncode == 0 else None

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short=10", "HEAD"),
        "dirty": bool(dirty),
        "command": " ".join(["python", os.path.relpath(sys.argv[0], root), *sys.argv[1:]]),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
    }


def save(record: dict) -> Path | None:
    """Write `record` as `RESULTS/SCRIPT-DATE-CPUKIND.json`; returns the path (None when
    `$KERAS_RESIDUAL_RESULTS` is `-`)."""
    folder = os.environ.get(RESULTS_ENV, str(RESULTS))
    if folder == "-":
        return None
    script = Path(sys.argv[0]).stem
    kind = cpu_kind(record.get("cpu_flags", []))
    stamp = re.sub(r"[^0-9T]", "", record["date"])[:15]
    path = Path(folder) / f"{script}-{stamp}-{kind}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def cpu_kind(flags) -> str:
    """`amx`, `avx512bf16` or `avx2` (`unknown` where no flags were recorded): what decides
    training speed on these CPUs."""
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512bf16"
    return "avx2" if flags else "unknown"


def emit(title: str, rows: list[dict], **meta) -> None:
    """Record `{"benchmark": title, provenance, **meta, "rows": rows}` in the results folder,
    print it as JSON and `rows` as a table with every row's columns (`-` where a row has
    none: a last epoch's extra TTA modes)."""
    record = {"benchmark": title, **provenance(), **meta, "rows": rows}
    path = save(record)
    print(json.dumps(record))
    if path is not None:
        print(f"recorded in {path}; `python benchmarks/summarize.py` updates the summary")
    if not rows:
        return
    columns = list(dict.fromkeys(column for row in rows for column in row))
    print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "-")) for c in columns) + " |")


def parse_changes(pairs: list[str]) -> dict:
    """`field=value` pairs (values as JSON, else strings) for `get_recipe` or a spec."""
    changes = {}
    for pair in pairs:
        field, separator, value = pair.partition("=")
        if not separator:
            raise SystemExit(f"--set and --spec take field=value, got {pair!r}")
        try:
            changes[field] = json.loads(value)
        except json.JSONDecodeError:
            changes[field] = value
    return changes
