"""Shared output for benchmark scripts: JSON on one line, then a Markdown table."""

from __future__ import annotations

import json


def cpu_flags() -> list[str]:
    """The CPU features that decide the speed of training here (bfloat16 and AMX)."""
    wanted = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2"}
    with open("/proc/cpuinfo") as cpuinfo:
        line = next((row for row in cpuinfo if row.startswith("flags")), "")
    return sorted(wanted & set(line.split()))


def emit(title: str, rows: list[dict], **meta) -> None:
    """Print `{"benchmark": title, **meta, "rows": rows}` as JSON and `rows` as a table
    with every row's columns (`-` where a row has none: a last epoch's extra TTA modes)."""
    print(json.dumps({"benchmark": title, **meta, "rows": rows}))
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
