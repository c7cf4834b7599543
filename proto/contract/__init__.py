"""The contract between the connector and the node agents, owned by neither side.

The plan model and its one visitor (`plan`), its type rules and binding (`binding`) into
bound nodes (`bound`), the one comparison semantics (`compare`), which filter terms the
agents run (`pushable`), exact totals (`decimals`), partial aggregates and their merge
(`combine`), the plan <-> protobuf conversion (`wire`) and the error classes (`errors`).
Both `bpfstore.connector` and `bpfstore.node_agent` import it; it imports pyarrow, numpy
and the generated protobuf messages only (tests/unit/test_layers.py keeps it so).
"""
