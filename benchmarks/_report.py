"""Shared output for benchmark scripts: JSON on one line, then a Markdown table."""

from __future__ import annotations

import json


def emit(title: str, rows: list[dict], **meta) -> None:
    """Print `{"benchmark": title, **meta, "rows": rows}` as JSON and `rows` as a table."""
    print(json.dumps({"benchmark": title, **meta, "rows": rows}))
    if not rows:
        return
    columns = list(rows[0])
    print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
