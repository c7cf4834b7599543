"""The contract between the connector and the node agents, owned by neither side.

The plan model (`plan`), its type rules and binding (`binding`), the one comparison
semantics (`compare`), exact totals (`decimals`), partial aggregates and their merge
(`combine`), the plan <-> protobuf conversion (`wire`) and the error classes (`errors`).
Both `bpfstore.connector` and `bpfstore.node_agent` import it; it imports pyarrow, numpy
and the generated protobuf messages only (tests/unit/test_layers.py keeps it so).
"""
