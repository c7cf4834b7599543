"""Print the measurements of a TPC-H run ($TPCH_REPORT, JSON lines) as a Markdown table:
per query and front end, equal or not, seconds over bpfstore next to plain Parquet, bytes the
agents sent. Usage: python tests/tpch/summary.py tpch.jsonl"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def main(path: str) -> None:
    with open(path) as f:
        runs = [json.loads(line) for line in f]
    by_query: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in runs:
        by_query[r["query"]][r["frontend"]] = r
    frontends = list(dict.fromkeys(r["frontend"] for r in runs))
    print(f"SF {runs[0]['sf']}: seconds over bpfstore / over Parquet, bytes moved; "
          "✗ marks an answer that differs\n")
    print("| query | " + " | ".join(frontends) + " |")
    print("|---" * (len(frontends) + 1) + "|")
    for name in sorted(by_query):
        cells = []
        for f in frontends:
            r = by_query[name].get(f)
            if r is None:
                cells.append("")
                continue
            text = ("" if r["equal"] else "✗ ") + f"{r['seconds']:.2f}"
            if r.get("parquet_seconds") is not None:
                text += f" / {r['parquet_seconds']:.2f}"
            if r.get("bytes_moved") is not None:
                text += f", {_human(r['bytes_moved'])}"
            cells.append(text)
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
