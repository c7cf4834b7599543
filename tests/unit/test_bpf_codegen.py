"""Generated C for the bpf engine: golden files (refresh with UPDATE_GOLDEN=1) and the
plans it must refuse, with the reason. Pure: nothing is compiled or loaded here."""

from __future__ import annotations

import datetime as dt
import decimal as D
import os
from pathlib import Path

import pyarrow as pa
import pytest

from bpfstore.contract.binding import bind_plan
from bpfstore.contract.combine import avg, expand
from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import Plan, col, count_star, max_, min_, sum_
from bpfstore.node_agent.engines.bpf.codegen import TemplateError, compile_plan
from bpfstore.node_agent.engines.bpf.codegen.template import check_settings, fill_holes
from bpfstore.node_agent.stats import ColumnStats

GOLDEN = Path(__file__).parent / "golden"
SCHEMA = pa.schema({
    "l_shipdate": pa.date32(), "l_discount": pa.decimal64(15, 2),
    "l_quantity": pa.decimal64(15, 2), "l_extendedprice": pa.decimal64(15, 2),
    "l_tax": pa.decimal64(15, 2), "l_returnflag": pa.dictionary(pa.int32(), pa.string()),
    "l_linestatus": pa.dictionary(pa.int32(), pa.string()), "f": pa.float64(),
    "n": pa.int64(), "l_commitdate": pa.date32(), "l_receiptdate": pa.date32(),
    "flag2": pa.dictionary(pa.int32(), pa.string()), "big": pa.int64(),
    "ts_s": pa.timestamp("s"), "ts_ms": pa.timestamp("ms"), "ts_utc": pa.timestamp("ms", "UTC"),
})
STATS = {
    "l_shipdate": ColumnStats(0, 8036, 10561), "l_discount": ColumnStats(0, "0.00", "0.10"),
    "l_quantity": ColumnStats(0, "1.00", "50.00"),
    "l_extendedprice": ColumnStats(0, "901.00", "104949.50"),
    "l_tax": ColumnStats(0, "0.00", "0.08"), "l_returnflag": ColumnStats(0, "A", "R"),
    "l_linestatus": ColumnStats(0, "F", "O"), "f": ColumnStats(0, 0.5, 9.5),
    "n": ColumnStats(3, 0, 10), "l_commitdate": ColumnStats(0, 8000, 10500),
    "l_receiptdate": ColumnStats(2, 8001, 10600), "flag2": ColumnStats(0, "A", "R"),
    "big": ColumnStats(0, -(2**62), 2**62), "ts_s": ColumnStats(0, 0, 10),
    "ts_ms": ColumnStats(0, 0, 10), "ts_utc": ColumnStats(0, 0, 10),
}
DICTS = {"l_returnflag": pa.array(["A", "N", "R"]), "l_linestatus": pa.array(["F", "O"]),
         "flag2": pa.array(["A", "N", "R"])}
price, disc, tax = col("l_extendedprice"), col("l_discount"), col("l_tax")
Q6 = ([sum_(price * disc)],
      (col("l_shipdate") >= dt.date(1994, 1, 1)) & (col("l_shipdate") < dt.date(1995, 1, 1))
      & disc.between(D.Decimal("0.05"), D.Decimal("0.07")) & (col("l_quantity") < 24), ())
Q1 = ([sum_("l_quantity"), sum_(price), sum_(price * (1 - disc)),
       sum_(price * (1 - disc) * (1 + tax)), avg("l_quantity"), count_star()],
      col("l_shipdate") <= dt.date(1998, 9, 2), ("l_returnflag", "l_linestatus"))


def _compile(aggregates, where, group_by, path="hot"):
    aggs, _ = expand(aggregates, None)
    plan = bind_plan(Plan("lineitem", filter=where, group_by=group_by, aggregates=tuple(aggs)),
                     SCHEMA)
    return compile_plan(plan, SCHEMA, STATS, 6_001_215, DICTS, path)


@pytest.mark.parametrize(("name", "query", "data_path"),
                         [("q6", Q6, "hot"), ("q1", Q1, "hot"), ("q6.cold", Q6, "cold"),
                          ("q1.cold", Q1, "cold"), ("q6.bcc", Q6, "bcc"),
                          ("q1.bcc", Q1, "bcc")])
def test_generated_c_matches_golden(name, query, data_path) -> None:
    program = _compile(*query, path=data_path)
    generated = f"// {' '.join(program.cflags)}\n{program.source}"  # settings, then the C
    path = GOLDEN / f"{name}.bpf.c"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(generated)
    assert generated == path.read_text(), "refresh with UPDATE_GOLDEN=1 if intended"


def test_constants_travel_in_the_context_so_shapes_are_shared() -> None:
    a = _compile([sum_(price * disc)], col("l_quantity") < 24, ())
    b = _compile([sum_(price * disc)], col("l_quantity") < 31, ())
    assert a.shape == b.shape and a.values != b.values
    assert a.values["r0"] == 2399 - 100 + 1  # quantity in [1.00, 23.99] as scaled integers


def _compile_on(query, stats, dicts, path="hot"):
    aggs, _ = expand(query[0], None)
    plan = bind_plan(Plan("lineitem", filter=query[1], group_by=query[2],
                          aggregates=tuple(aggs)), SCHEMA)
    return compile_plan(plan, SCHEMA, {**STATS, **stats}, 100_000, {**DICTS, **dicts}, path)


@pytest.mark.parametrize("path", ["hot", "cold", "bcc"])
def test_one_shape_whatever_the_partitions_ranges_and_dictionaries(path) -> None:
    """Statistics that decide a term (every date inside 1994, every quantity below 24),
    other dictionaries (fewer flags, in another order) and group bases change the context's
    values, not the C; only NULLs (a validity bitmap to read) make another shape."""
    inside = {"l_shipdate": ColumnStats(0, 8800, 8900), "l_quantity": ColumnStats(0, "1", "9"),
              "l_discount": ColumnStats(0, "0.05", "0.06")}
    dicts = {"l_returnflag": pa.array(["R", "A"]), "l_linestatus": pa.array(["O"])}
    for query in [Q6, Q1]:
        a = _compile_on(query, {}, {}, path)
        b = _compile_on(query, inside, dicts, path)
        assert a.shape == b.shape and a.values != b.values
        nulls = _compile_on(query, {"l_quantity": ColumnStats(4, "1", "50")}, {}, path)
        assert nulls.shape != a.shape and nulls.validity
    absent = (*Q6[:1], Q6[1] & col("l_returnflag").isin(["N", "X"]), ())  # "X" has no code
    assert _compile_on(absent, {}, {}, path).shape == _compile_on(absent, {}, dicts, path).shape


def test_bcc_groups_live_in_a_map_value_of_a_power_of_two_groups() -> None:
    """bcc has no arena: a slot's groups are one value of `group_words`, GROUP_CAP groups of
    STRIDE words; a few groups more or fewer keep one shape."""
    program = _compile(*Q1, path="bcc")
    assert program.groups == 6 and program.settings["GROUP_CAP"] == "64"
    assert program.settings["STRIDE"] == "9" and "g &= GROUP_CAP - 1;" in program.source
    assert "__arena" not in program.source
    wide = _compile_on(([count_star()], None, ("l_shipdate",)), {
        "l_shipdate": ColumnStats(0, 8000, 8000 + 4095)}, {}, "bcc")
    assert wide.groups == 4096 and wide.settings["GROUP_CAP"] == "8192"  # ids 0 .. 4096
    assert "GROUP_CAP" not in _compile(*Q6, path="bcc").settings


def test_bcc_bounds_a_requests_group_memory() -> None:
    """16 slots a program and 16 programs attached: a slot's groups stay within 256 KiB
    (4,096 groups take a map value of 8,192; with a count and four 128-bit sums, 576 KiB),
    where bpf's arena region still holds them."""
    query = ([count_star(), *(sum_(c) for c in ("l_quantity", "l_extendedprice",
                                                 "l_discount", "l_tax"))],
             None, ("l_shipdate",))
    wide = {"l_shipdate": ColumnStats(0, 8000, 8000 + 4095)}
    assert _compile_on(query, wide, {}, "hot").groups == 4096
    with pytest.raises(Unsupported, match="exceed 256 KiB of accumulators a request"):
        _compile_on(query, wide, {}, "bcc")


def test_settings_travel_as_flags_not_text() -> None:
    program = _compile(*Q1)
    assert program.settings["STRIDE"] == "9"  # a group: its count, then 4 sums of 2 words
    single = program.with_settings(UNROLL="1")
    assert single.source == program.source and "-DUNROLL=1" in single.cflags
    assert single.shape != program.shape  # another object in the caches
    with pytest.raises(KeyError, match="UNROLLED"):
        program.with_settings(UNROLLED="1")


def test_a_missing_hole_or_setting_is_an_error() -> None:
    assert fill_holes("a /*@X@*/ b /*@X@*/", {"X": "1"}, "t.c") == "a 1 b 1"
    with pytest.raises(TemplateError, match=r"t.c has no hole /\*@Y@\*/"):
        fill_holes("a /*@X@*/", {"X": "1", "Y": "2"}, "t.c")
    with pytest.raises(TemplateError, match="left unfilled"):
        fill_holes("a /*@X@*/ /*@Z@*/", {"X": "1"}, "t.c")
    check_settings("#ifndef N\n#define N 1\n#endif\n", {"N": "2"}, "t.c")
    with pytest.raises(TemplateError, match="t.c has no setting N"):
        check_settings("#define N 1\n", {"N": "2"}, "t.c")


def test_q6_windows_are_exact_integers() -> None:
    program = _compile(*Q6)
    windows = {k: v for k, v in program.values.items() if k.startswith(("lo", "r"))}
    assert windows["lo0"] == (dt.date(1994, 1, 1) - dt.date(1970, 1, 1)).days
    assert windows["r0"] == 365  # 1994-01-01 .. 1994-12-31
    assert (windows["lo1"], windows["r1"]) == (5, 3)  # discount 0.05 .. 0.07


def test_statistics_prove_an_empty_result() -> None:
    assert _compile([count_star()], col("l_quantity") > 60, ()).empty
    assert _compile([count_star()], col("l_returnflag").eq("X"), ()).empty


@pytest.mark.parametrize(("aggregates", "where", "group_by", "why"), [
    ([sum_("f")], None, (), "float sums run on arrow"),
    ([max_(col("f") * 2)], None, (), "max of an expression"),
    ([sum_(col("n") * col("f"))], None, (), "float"),
    ([count_star()], None, ("n",), "group key 'n' has NULLs"),
    ([count_star()], col("l_quantity") < col("f"), (), "compares floats"),
    ([count_star()], col("ts_s") < col("ts_ms"), (), "compares timestamp"),
    ([count_star()], col("ts_ms").eq(col("ts_utc")), (), "compares timestamp"),
    ([count_star()], col("l_shipdate") < col("ts_s"), (), "compares date32"),
    ([count_star()], (col("n") > 0) | (col("big") > col("l_tax")), (), "overflow 64 bits"),
    ([count_star()], col("l_returnflag") < col("flag2"), (), "not = or != on one dict"),
    ([count_star()], col("l_returnflag").eq(col("l_linestatus")), (), "on one dictionary"),
    ([max_(price * disc)], None, (), "max of an expression"),
    ([sum_(price * price * price * price)], None, (), "may overflow 64 bits"),
    ([min_("l_returnflag")], None, (), "not integer-like"),
])
def test_refusals_name_the_reason(aggregates, where, group_by, why) -> None:
    with pytest.raises(Unsupported, match=why):
        _compile(aggregates, where, group_by)


def test_column_against_column_is_one_signed_test() -> None:
    """TPC-H Q4/Q12/Q21's l_commitdate < l_receiptdate: less_mask, receiptdate's NULLs out;
    decimals meet at the finer scale; one dictionary's codes compare for equality."""
    dates = _compile([count_star()], col("l_commitdate") < col("l_receiptdate"), ())
    assert "less_mask((s64)col0[r], (s64)col1[r])" in dates.source
    assert "(0 - ((u64)BIT(val1, r)))" in dates.source and "val0" not in dates.source
    scaled = _compile([count_star()], (col("n") > 0) | (col("l_tax") > col("n")), ())
    assert "* 100LL" in scaled.source
    codes = _compile([count_star()], col("l_returnflag").ne(col("flag2")), ())
    assert "less_mask((s64)col0[r], (s64)col1[r])" in codes.source


def test_column_against_column_is_one_shape_whatever_the_statistics() -> None:
    """Statistics deciding `a op b` (1.00 > 0.08 on every row) change no C: the test stays,
    and pruning, not codegen, drops partitions where no row can match."""
    never = _compile([count_star()], col("l_quantity") < col("l_tax"), ())
    every = _compile([count_star()], col("l_quantity") > col("l_tax"), ())
    assert "less_mask" in never.source and "less_mask" in every.source
    assert not never.empty and not every.empty


def test_key_sets_compile_as_windows_of_the_keys_in_the_partitions_range() -> None:
    """Only the keys [min, max] admits become windows (n is 0..10: keys 3, 7 of four), padded
    to a power of two; none in range: no program; more than 64 in range: arrow; bcc: arrow."""
    p = _compile([count_star()], col("n").isin_keys([-5, 3, 7, 99]), [])
    assert p.source.count("lo") > 0 and not p.empty
    windows = sum(1 for name, _ in p.fields if name.startswith("lo"))
    assert windows == 2
    assert _compile([count_star()], col("n").isin_keys([50, 99]), []).empty
    assert _compile([count_star()], col("l_returnflag").isin_keys(["N", "zz"]), []).fields
    three = _compile([count_star()], col("l_shipdate").isin_keys(
        [dt.date(1995, 1, d) for d in (1, 2, 3)]), [])
    assert sum(1 for name, _ in three.fields if name.startswith("lo")) == 4  # padded
    with pytest.raises(Unsupported, match="at most 64"):
        _compile([count_star()], col("big").isin_keys(range(65)), [])
    with pytest.raises(Unsupported, match="bcc"):
        _compile([count_star()], col("n").isin_keys([3]), [], path="bcc")
