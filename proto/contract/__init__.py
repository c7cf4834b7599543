"""The contract between the connector and the node agents, owned by neither side.

The plan model and its one visitor (`plan`), its type rules and binding (`binding`) into
bound nodes (`bound`), key sets (`keysets`), the one comparison semantics (`compare`),
which filter terms the agents run (`pushable`), exact totals (`decimals`), partial
aggregates and their merge (`combine`), the plan <-> protobuf conversion (`wire`) and the
error classes (`errors`).
Both `bpfstore.connector` and `bpfstore.node_agent` import it; it imports pyarrow, numpy
and the generated protobuf messages only (tests/unit/test_layers.py keeps it so).

Semantics every engine keeps:

- **Types.** Comparisons use the operands' common type (any float → float64; else any decimal →
  decimal; else the wider integer); a string literal against a date is parsed as a date.
  `+ - *` on integers keep the wider integer type; on decimals they follow Spark/Arrow precision
  rules capped at 38; `/` gives float64. An explicit `result_type` on a node wins.
- **Comparisons with literals** (`compare.py`, one definition): a float on either side
  compares in float64 (the column's value correctly rounded: the decimal 0.05 equals the float
  0.05, the integer 2^53+1 equals 2^53.0); decimals, integers, dates and timestamps (to the
  nanosecond) compare exactly; −0.0 equals 0.0, and MIN/MAX of zeros answer 0.0 on every
  engine. Binding rewrites a literal that has no exact value in the column's type (a float
  against an integer or decimal, a decimal finer than its scale or beyond its range, a
  timestamp finer than its unit, a signed literal against uint64) into an exact comparison in
  that type (`=` may become a BETWEEN), and statistics prune with the same windows of stored
  integers, so pruning never drops a row an engine would keep.
- **Key sets** (`x IN <keys>`, `col("x").isin_keys(array)`; keysets.py): the keys are one
  Arrow array, converted to x's type exactly at binding (float64 for a float x) or refused:
  float keys never meet integer or decimal columns, a decimal key finer than x's scale, a
  timestamp finer than its unit or in another zone is `INVALID_ARGUMENT`; integer keys beyond
  x's type are dropped (they equal no value). They travel sorted and distinct as Arrow IPC,
  bounded by the agent's `max_key_set_keys` and `max_key_set_bytes`. SQL: as DuckDB's
  `x IN (SELECT k FROM keys)` — NULL x never matches, a NULL key makes a non-match NULL (as
  for `In`), the empty set is FALSE for every row; −0.0 equals 0.0 and NaN equals NaN.
  PANDAS: as `isin` — a missing x matches only when the keys hold NULL or NaN.
- **Overflow.** Integer overflow is an error (`OUT_OF_RANGE`) unless the node says NULL;
  division by zero follows IEEE unless the node says ERROR or NULL. A SUM of integers or
  decimals whose exact total does not fit decimal128(38, s), or a decimal AVG that does not
  fit decimal(p+4, s+4), is `OUT_OF_RANGE` on every engine, grouped or not, however the data
  is partitioned (aggregates carry no overflow mode; Spark's legacy NULL is the connector's).
  Partial sums are decimal256(76, s), so a partition's partial beyond 38 digits (−10**37 in
  one, +10**37 in another) merges into a total that fits.
- **Plans.** A column's type is its stored type: an explicit `result_type` on a Column that
  differs is `INVALID_ARGUMENT` (use a Cast). `partitions` is a set: a partition named twice
  is read once. Partials are read by position, so a group key may be named like a partial.
- **SQL dialect.** Three-valued logic; `x IN (…, NULL)` is NULL when nothing matches; NaN = NaN
  and NaN sorts above +inf (min/max too); SUM of nothing is NULL; group keys may be NULL.
- **PANDAS dialect.** NaN is missing; a missing value never satisfies a comparison and `!=` is
  true for it; `isin` matches missing values when the list holds None/NaN; SUM of nothing is 0;
  rows whose group key is missing are dropped.
- **AVG** is finished by the connector from the exact sum and count: decimal(p+4, s+4) rounded
  half up for decimals in the SQL dialect (Spark's rule), float64 otherwise. `bpfstore sql`
  finishes it as DuckDB does (float64).
"""
