"""`explain(df)`: Spark's plan plus what bpfstore pushes to the agents for each scan.

Spark's own `df.explain()` shows the pushed aggregates (the partial columns of
`BatchScan bpfstore[...]`) and the filters accepted by `pushFilters`; the whole filter trees
and aggregate specs the extension sends travel as relation options, which this decodes.
"""

from __future__ import annotations

from typing import Any

from bpfstore.contract.plan import describe, describe_aggregate

from .spec import AggSpec, filter_from_option


def _children(node: Any) -> list[Any]:
    kids = node.children()
    return [kids.apply(i) for i in range(kids.size())]


def _scans(node: Any) -> list[Any]:
    found = []
    kind = node.getClass().getSimpleName()
    relation = node.relation() if kind == "DataSourceV2ScanRelation" else \
        node if kind == "DataSourceV2Relation" else None
    if relation is not None and relation.table().name() == "bpfstore":
        found.append(relation)
    for child in _children(node):
        found.extend(_scans(child))
    return found


def pushdown_summary(df: Any) -> list[str]:
    """One paragraph per bpfstore scan of the optimized plan."""
    # late: source.py imports pyspark's data source API, which needs pyspark (optional)
    from .source import TRANSPORT_OPTIONS, client_for, parse_agents, transport_from_options

    out = []
    for rel in _scans(df._jdf.queryExecution().optimizedPlan()):
        options = rel.options()
        name = options.get("dataset") or options.get("path")
        agents = parse_agents(options.get("agents"))
        engines = []
        transport = transport_from_options({o.lower(): options.get(o)
                                            for o in TRANSPORT_OPTIONS})
        for info in client_for(agents, transport).info():
            available = [e["name"] for e in info.get("engines", []) if e["available"]]
            engines.append(f"{info['agent']}: {info.get('default_engine', '?')} "
                           f"(available: {', '.join(available) or info.get('error', '-')})")
        lines = [f"bpfstore scan of {name!r} on {len(agents)} agent(s)",
                 "  engines: " + "; ".join(engines)]
        spec = options.get("bpfstore.agg")
        if spec:
            agg = AggSpec.parse(spec)
            lines.append("  pushed aggregate: partials per partition, merged by Spark")
            lines.append("    group by: " + (", ".join(agg.groups) or "-"))
            lines.append("    aggregates: " + ", ".join(describe_aggregate(a)
                                                        for a in agg.aggregates))
            if agg.filter is not None:
                lines.append("    filter: " + describe(agg.filter))
        else:
            schema = rel.schema()
            lines.append("  columns read: " + ", ".join(f.name() for f in schema.fields()))
            where = filter_from_option(options.get("bpfstore.filter"))
            lines.append("  filter tree pushed: " + (describe(where) if where else "-")
                         + " (plus PushedFilters, if any)")
        out.append("\n".join(lines))
    return out


def explain(df: Any) -> str:
    """Spark's physical plan followed by the bpfstore pushdown summary; printed and returned."""
    plan = df._jdf.queryExecution().explainString(
        df.sparkSession._jvm.org.apache.spark.sql.execution.ExplainMode.fromString("formatted"))
    text = plan + "\n== bpfstore pushdown ==\n" + ("\n".join(pushdown_summary(df))
                                                  or "no bpfstore scan")
    print(text)
    return text
