"""Markdown tables and PNG plots of a `bench_cluster.py` result (docs/benchmarks/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LABELS = {"bpf-hot": "pushdown, bpf hot", "bpf-cold": "pushdown, bpf cold",
          "arrow": "pushdown, arrow", "bpf": "pushdown, bpf", "auto": "pushdown, auto",
          "filter": "filter+projection only", "full": "full read (connector)",
          "parquet": "local Parquet (no network)"}
SHORT = {"bpf-hot": "pushdown\nbpf hot", "bpf-cold": "pushdown\nbpf cold",
         "arrow": "pushdown\narrow", "bpf": "pushdown\nbpf", "auto": "pushdown\nauto",
         "filter": "filter+proj.\nonly", "full": "full read\n(connector)",
         "parquet": "local\nParquet"}
COLORS = {"bpf-hot": "#1b7837", "bpf-cold": "#5aae61", "arrow": "#2166ac", "bpf": "#1b7837",
          "auto": "#1b7837", "filter": "#f4a582", "full": "#b2182b", "parquet": "#777777"}


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_time(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1e3:.0f} ms" if s < 10 else f"{s:.1f} s"


def _cell(e: dict[str, Any]) -> tuple[str, str, str, str]:
    if "seconds" not in e:
        err = (e.get("error") or "no result").replace("|", "\\|")
        return "failed", "-", "-", f"failed: {err[:160]}"
    agrees = {True: "yes", False: "**DIFFERS**", None: "-"}[e.get("agrees")]
    return human_time(e["seconds"]), human_bytes(e["link_bytes"]), f"{e['agent_cpu']:.2f} s", agrees


def tables(result: dict[str, Any]) -> str:
    res, modes = result["results"], result["modes"]
    m = result["machine"]
    warm = (" after a warm-up" if result.get("warmup", True) else
            " (no warm-up round: the first round's compilations and cache fills count)")
    load = (f"; load average {result['load_average'][1]:.1f} over the 5 minutes before the "
            "tables were written" if "load_average" in result else " (shared, noisy)")
    lines = [
        f"# Cluster benchmark: TPC-H SF{result['sf']:g}, {result['hosts']} storage hosts, "
        f"{result['link']} links",
        "",
        f"`{result['command']}` on {result['date']}: {result['rows']:,} lineitem rows in "
        f"{result['partitions']} partitions over {result['hosts']} agents (network namespaces, "
        f"veth pairs shaped with tbf to {result['link']} each way). Medians of "
        f"{result['runs']} interleaved rounds{warm}. Machine: {m['cpus']} vCPU "
        f"{m['cpu']}, {m['memory_gib']} GiB, {m['os']}, kernel {m['kernel']}{load}.",
        "",
        "\"link bytes\" = bytes through the client-side veths (rx + tx interface counters, both "
        "directions, all hosts); \"agent CPU\" = user + system time of the agent processes "
        "during the query; \"× full\" = full read time / this time; \"answer\" = same as the "
        "other modes of this front end.",
        "",
    ]
    for q in [q for q in result["queries"] if not q.startswith("sel@")]:
        lines += [f"## {q}", "", "| front end | mode | time | × full | link bytes | "
                  "bytes vs full | agent CPU | answer |", "|---|---|---|---|---|---|---|---|"]
        for front, per_q in res.items():
            if q not in per_q:
                continue
            full = per_q[q].get("full", {})
            for mode in modes:
                e = per_q[q].get(mode, {})
                t, b, cpu, ok = _cell(e)
                speed = ratio = "-"
                if "seconds" in e and "seconds" in full and mode != "full":
                    speed = f"{full['seconds'] / e['seconds']:.1f}×"
                    if e["link_bytes"] and mode != "parquet":
                        r = full["link_bytes"] / e["link_bytes"]
                        ratio = f"{r:,.0f}× fewer" if r >= 1.5 else f"{r:.2f}×"
                lines.append(f"| {front} | {LABELS.get(mode, mode)} | {t} | {speed} | {b} | "
                             f"{ratio} | {cpu} | {ok} |")
        lines.append("")
    sweep = [q for q in result["queries"] if q.startswith("sel@")]
    if sweep:
        lines += ["## Selectivity sweep", "",
                  "`select sum(l_extendedprice) from lineitem where l_partkey <= K`, K chosen "
                  "for each fraction of rows: time (link bytes).", "",
                  "| front end | mode | " + " | ".join(f"{float(q[4:]) * 100:g}%" for q in sweep)
                  + " | answer |", "|---|---|" + "---|" * len(sweep) + "---|"]
        for front, per_q in res.items():
            for mode in modes:
                cells, agrees = [], []
                for q in sweep:
                    e = per_q.get(q, {}).get(mode, {})
                    if "seconds" in e:
                        cells.append(f"{human_time(e['seconds'])} ({human_bytes(e['link_bytes'])})")
                        agrees.append(e.get("agrees"))
                    else:
                        cells.append("failed" if e.get("error") else "-")
                errors = {per_q.get(q, {}).get(mode, {}).get("error") for q in sweep} - {None}
                ok = "**DIFFERS**" if False in agrees else ("yes" if agrees else "-")
                if errors:
                    ok = "failed: " + next(iter(errors)).replace("|", "\\|")[:120]
                lines.append(f"| {front} | {LABELS.get(mode, mode)} | " + " | ".join(cells)
                             + f" | {ok} |")
        lines.append("")
    return "\n".join(lines)


def plots(result: dict[str, Any], out: Path, stem: str) -> list[Path]:
    import matplotlib  # late: only for plots, and the backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res, modes = result["results"], result["modes"]
    fronts = list(res)
    title = (f"TPC-H SF{result['sf']:g}, {result['hosts']} storage hosts, {result['link']} links "
             f"({result['machine']['cpus']} vCPU, kernel {result['machine']['kernel']})")
    paths = []
    named = [q for q in result["queries"] if not q.startswith("sel@")]
    if named:
        fig, axes = plt.subplots(2, len(named), figsize=(5.2 * len(named), 7), squeeze=False)
        width = 0.8 / max(1, len(fronts))
        for col, q in enumerate(named):
            for row, (key, ylabel) in enumerate((("seconds", "wall time (s)"),
                                                 ("link_bytes", "bytes across the links"))):
                ax = axes[row][col]
                for i, front in enumerate(fronts):
                    xs, ys, colors = [], [], []
                    for j, mode in enumerate(modes):
                        e = res[front].get(q, {}).get(mode, {})
                        x = j + (i - (len(fronts) - 1) / 2) * width
                        if key in e and e[key] > 0:
                            xs.append(x)
                            ys.append(e[key])
                            colors.append(COLORS.get(mode, "#444444"))
                        elif e.get("error"):
                            ax.text(x, 0.02, "failed", transform=ax.get_xaxis_transform(),
                                    ha="center", va="bottom", fontsize=6, rotation=90,
                                    color="#b2182b")
                    bars = ax.bar(xs, ys, width * 0.95, color=colors,
                                  hatch="" if i == 0 else "//", edgecolor="white")
                    for b, y in zip(bars, ys, strict=True):
                        text = (f"{y:.2g}s" if y < 10 else f"{y:.0f}s") if key == "seconds" \
                            else human_bytes(y).replace(" ", "")
                        ax.text(b.get_x() + b.get_width() / 2, y, text, ha="center",
                                va="bottom", fontsize=6, rotation=90)
                ax.set_yscale("log")
                ax.set_xticks(range(len(modes)))
                ax.set_xticklabels([SHORT.get(m, m) for m in modes], fontsize=7)
                ax.set_ylabel(ylabel)
                ax.set_title(f"{q}: {'time' if key == 'seconds' else 'bytes moved'}"
                             f" (plain = {fronts[0]}"
                             + (f", hatched = {fronts[1]})" if len(fronts) > 1 else ")"),
                             fontsize=9)
                ax.margins(y=0.25)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = out / f"{stem}-queries.png"
        fig.savefig(path, dpi=72)
        plt.close(fig)
        paths.append(path)
    sweep = [q for q in result["queries"] if q.startswith("sel@")]
    if sweep:
        sel = [float(q[4:]) * 100 for q in sweep]
        fig, axes = plt.subplots(2, len(fronts), figsize=(5.2 * len(fronts), 7), squeeze=False)
        for col, front in enumerate(fronts):
            for row, (key, ylabel) in enumerate((("seconds", "wall time (s)"),
                                                 ("link_bytes", "bytes across the links"))):
                ax = axes[row][col]
                for mode in modes:
                    pts = [(s, res[front].get(q, {}).get(mode, {}).get(key))
                           for s, q in zip(sel, sweep, strict=True)]
                    pts = [(s, v) for s, v in pts if v]
                    if pts:
                        ax.plot(*zip(*pts, strict=True), marker="o", label=LABELS.get(mode, mode),
                                color=COLORS.get(mode, "#444444"))
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlabel("selectivity (% of rows passing the filter)")
                ax.set_ylabel(ylabel)
                ax.set_title(f"{front}: filter + sum, {'time' if key == 'seconds' else 'bytes'}",
                             fontsize=9)
                ax.grid(True, which="major", alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = out / f"{stem}-selectivity.png"
        fig.savefig(path, dpi=72)
        plt.close(fig)
        paths.append(path)
    return paths


def write(result: dict[str, Any], out: Path, stem: str, plots_too: bool = True,
          **kw: Any) -> list[Path]:
    md = out / f"{stem}.md"
    md.write_text(tables(result))
    paths = [md]
    if kw.get("plots", plots_too):
        paths += plots(result, out, stem)
    return paths


if __name__ == "__main__":  # re-render saved results: cluster_report.py docs/benchmarks/*.json
    for arg in sys.argv[1:]:
        p = Path(arg)
        print(write(json.loads(p.read_text()), p.parent, p.stem))
