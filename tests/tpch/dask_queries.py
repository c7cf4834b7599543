"""The 22 TPC-H queries as ordinary Dask DataFrame code (merge, boolean filters,
groupby().agg, sort_values().head()), written the way public benchmark suites write them.
Each takes the eight tables as Dask frames and returns a lazy collection (frame or scalar)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

Tables = dict[str, Any]


def _revenue(df: Any) -> Any:
    return df.l_extendedprice * (1 - df.l_discount)


def q01(t: Tables) -> Any:
    li = t["lineitem"]
    f = li[li.l_shipdate <= datetime(1998, 9, 2)]
    f = f.assign(disc_price=_revenue(f))
    f = f.assign(charge=f.disc_price * (1 + f.l_tax))
    g = f.groupby(["l_returnflag", "l_linestatus"]).agg(
        sum_qty=("l_quantity", "sum"), sum_base_price=("l_extendedprice", "sum"),
        sum_disc_price=("disc_price", "sum"), sum_charge=("charge", "sum"),
        avg_qty=("l_quantity", "mean"), avg_price=("l_extendedprice", "mean"),
        avg_disc=("l_discount", "mean"), count_order=("l_orderkey", "size"))
    return g.reset_index().sort_values(["l_returnflag", "l_linestatus"])


def q02(t: Tables) -> Any:
    region, nation, supplier, part, ps = (t[n] for n in (
        "region", "nation", "supplier", "part", "partsupp"))
    europe = (region[region.r_name == "EUROPE"]
              .merge(nation, left_on="r_regionkey", right_on="n_regionkey")
              .merge(supplier, left_on="n_nationkey", right_on="s_nationkey")
              .merge(ps, left_on="s_suppkey", right_on="ps_suppkey"))
    brass = part[(part.p_size == 15) & part.p_type.str.endswith("BRASS")]
    j = brass.merge(europe, left_on="p_partkey", right_on="ps_partkey")
    cheapest = j.groupby("p_partkey").ps_supplycost.min().reset_index()
    j = j.merge(cheapest, on=["p_partkey", "ps_supplycost"])
    columns = ["s_acctbal", "s_name", "n_name", "p_partkey", "p_mfgr", "s_address", "s_phone",
               "s_comment"]
    return j[columns].sort_values(["s_acctbal", "n_name", "s_name", "p_partkey"],
                                  ascending=[False, True, True, True]).head(100, compute=False)


def q03(t: Tables) -> Any:
    c, o, li = t["customer"], t["orders"], t["lineitem"]
    day = datetime(1995, 3, 15)
    j = (c[c.c_mktsegment == "BUILDING"]
         .merge(o[o.o_orderdate < day], left_on="c_custkey", right_on="o_custkey")
         .merge(li[li.l_shipdate > day], left_on="o_orderkey", right_on="l_orderkey"))
    j = j.assign(revenue=_revenue(j))
    g = j.groupby(["l_orderkey", "o_orderdate", "o_shippriority"]).revenue.sum().reset_index()
    top = g.sort_values(["revenue", "o_orderdate", "l_orderkey"],
                        ascending=[False, True, True]).head(10, compute=False)
    return top[["l_orderkey", "revenue", "o_orderdate", "o_shippriority"]]


def q04(t: Tables) -> Any:
    o, li = t["orders"], t["lineitem"]
    o = o[(o.o_orderdate >= datetime(1993, 7, 1)) & (o.o_orderdate < datetime(1993, 10, 1))]
    late = li[li.l_commitdate < li.l_receiptdate][["l_orderkey"]].drop_duplicates()
    j = o.merge(late, left_on="o_orderkey", right_on="l_orderkey")
    g = j.groupby("o_orderpriority").agg(order_count=("o_orderkey", "count")).reset_index()
    return g.sort_values("o_orderpriority")


def q05(t: Tables) -> Any:
    region, nation, c, o, li, s = (t[n] for n in (
        "region", "nation", "customer", "orders", "lineitem", "supplier"))
    o = o[(o.o_orderdate >= datetime(1994, 1, 1)) & (o.o_orderdate < datetime(1995, 1, 1))]
    j = (region[region.r_name == "ASIA"]
         .merge(nation, left_on="r_regionkey", right_on="n_regionkey")
         .merge(c, left_on="n_nationkey", right_on="c_nationkey")
         .merge(o, left_on="c_custkey", right_on="o_custkey")
         .merge(li, left_on="o_orderkey", right_on="l_orderkey")
         .merge(s, left_on=["l_suppkey", "n_nationkey"], right_on=["s_suppkey", "s_nationkey"]))
    j = j.assign(revenue=_revenue(j))
    g = j.groupby("n_name").revenue.sum().reset_index()
    return g.sort_values("revenue", ascending=False)


def q06(t: Tables) -> Any:
    li = t["lineitem"]
    f = li[(li.l_shipdate >= datetime(1994, 1, 1)) & (li.l_shipdate < datetime(1995, 1, 1))
           & (li.l_discount >= 0.05) & (li.l_discount <= 0.07) & (li.l_quantity < 24)]
    return (f.l_extendedprice * f.l_discount).sum()


def q07(t: Tables) -> Any:
    nation, s, li, o, c = (t[n] for n in ("nation", "supplier", "lineitem", "orders",
                                          "customer"))
    n = nation[nation.n_name.isin(["FRANCE", "GERMANY"])]
    supp = n.merge(s, left_on="n_nationkey", right_on="s_nationkey")[["n_name", "s_suppkey"]]
    supp = supp.rename(columns={"n_name": "supp_nation"})
    cust = n.merge(c, left_on="n_nationkey", right_on="c_nationkey")[["n_name", "c_custkey"]]
    cust = cust.rename(columns={"n_name": "cust_nation"})
    li = li[(li.l_shipdate >= datetime(1995, 1, 1)) & (li.l_shipdate <= datetime(1996, 12, 31))]
    j = (li.merge(supp, left_on="l_suppkey", right_on="s_suppkey")
         .merge(o, left_on="l_orderkey", right_on="o_orderkey")
         .merge(cust, left_on="o_custkey", right_on="c_custkey"))
    j = j[((j.supp_nation == "FRANCE") & (j.cust_nation == "GERMANY"))
          | ((j.supp_nation == "GERMANY") & (j.cust_nation == "FRANCE"))]
    j = j.assign(l_year=j.l_shipdate.dt.year, volume=_revenue(j))
    g = j.groupby(["supp_nation", "cust_nation", "l_year"]).volume.sum().reset_index()
    g = g.rename(columns={"volume": "revenue"})
    return g.sort_values(["supp_nation", "cust_nation", "l_year"])


def q08(t: Tables) -> Any:
    region, nation, c, o, li, s, p = (t[n] for n in (
        "region", "nation", "customer", "orders", "lineitem", "supplier", "part"))
    america = region[region.r_name == "AMERICA"].merge(
        nation, left_on="r_regionkey", right_on="n_regionkey")[["n_nationkey"]]
    cust = america.merge(c, left_on="n_nationkey", right_on="c_nationkey")[["c_custkey"]]
    o = o[(o.o_orderdate >= datetime(1995, 1, 1)) & (o.o_orderdate <= datetime(1996, 12, 31))]
    o = o.merge(cust, left_on="o_custkey", right_on="c_custkey")
    p = p[p.p_type == "ECONOMY ANODIZED STEEL"][["p_partkey"]]
    supp = s.merge(nation, left_on="s_nationkey", right_on="n_nationkey")[["s_suppkey", "n_name"]]
    j = (li.merge(p, left_on="l_partkey", right_on="p_partkey")
         .merge(o, left_on="l_orderkey", right_on="o_orderkey")
         .merge(supp, left_on="l_suppkey", right_on="s_suppkey"))
    j = j.assign(o_year=j.o_orderdate.dt.year, volume=_revenue(j))
    j = j.assign(brazil=j.volume.where(j.n_name == "BRAZIL", 0))
    g = j.groupby("o_year")[["brazil", "volume"]].sum()
    g = g.assign(mkt_share=g.brazil / g.volume)[["mkt_share"]].reset_index()
    return g.sort_values("o_year")


def q09(t: Tables) -> Any:
    p, li, ps, s, o, nation = (t[n] for n in (
        "part", "lineitem", "partsupp", "supplier", "orders", "nation"))
    p = p[p.p_name.str.contains("green")][["p_partkey"]]
    j = (li.merge(p, left_on="l_partkey", right_on="p_partkey")
         .merge(ps, left_on=["l_suppkey", "l_partkey"], right_on=["ps_suppkey", "ps_partkey"])
         .merge(s, left_on="l_suppkey", right_on="s_suppkey")
         .merge(o, left_on="l_orderkey", right_on="o_orderkey")
         .merge(nation, left_on="s_nationkey", right_on="n_nationkey"))
    j = j.assign(o_year=j.o_orderdate.dt.year,
                 amount=_revenue(j) - j.ps_supplycost * j.l_quantity)
    g = j.groupby(["n_name", "o_year"]).amount.sum().reset_index()
    g = g.rename(columns={"n_name": "nation", "amount": "sum_profit"})
    return g.sort_values(["nation", "o_year"], ascending=[True, False])


def q10(t: Tables) -> Any:
    c, o, li, nation = (t[n] for n in ("customer", "orders", "lineitem", "nation"))
    o = o[(o.o_orderdate >= datetime(1993, 10, 1)) & (o.o_orderdate < datetime(1994, 1, 1))]
    j = (c.merge(o, left_on="c_custkey", right_on="o_custkey")
         .merge(li[li.l_returnflag == "R"], left_on="o_orderkey", right_on="l_orderkey")
         .merge(nation, left_on="c_nationkey", right_on="n_nationkey"))
    j = j.assign(revenue=_revenue(j))
    keys = ["c_custkey", "c_name", "c_acctbal", "c_phone", "n_name", "c_address", "c_comment"]
    g = j.groupby(keys).revenue.sum().reset_index()
    g = g.sort_values(["revenue", "c_custkey"], ascending=[False, True]).head(20, compute=False)
    return g[["c_custkey", "c_name", "revenue", "c_acctbal", "n_name", "c_address", "c_phone",
              "c_comment"]]


def q11(t: Tables) -> Any:
    nation, s, ps = t["nation"], t["supplier"], t["partsupp"]
    j = (nation[nation.n_name == "GERMANY"]
         .merge(s, left_on="n_nationkey", right_on="s_nationkey")
         .merge(ps, left_on="s_suppkey", right_on="ps_suppkey"))
    j = j.assign(value=j.ps_supplycost * j.ps_availqty)
    threshold = j.value.sum() * 0.0001
    g = j.groupby("ps_partkey").value.sum().reset_index()
    g = g[g.value > threshold]
    return g.sort_values(["value", "ps_partkey"], ascending=[False, True])


def q12(t: Tables) -> Any:
    o, li = t["orders"], t["lineitem"]
    li = li[li.l_shipmode.isin(["MAIL", "SHIP"]) & (li.l_commitdate < li.l_receiptdate)
            & (li.l_shipdate < li.l_commitdate) & (li.l_receiptdate >= datetime(1994, 1, 1))
            & (li.l_receiptdate < datetime(1995, 1, 1))]
    j = o.merge(li, left_on="o_orderkey", right_on="l_orderkey")
    high = j.o_orderpriority.isin(["1-URGENT", "2-HIGH"])
    j = j.assign(high_line_count=high.astype("int64"), low_line_count=(~high).astype("int64"))
    g = j.groupby("l_shipmode")[["high_line_count", "low_line_count"]].sum().reset_index()
    return g.sort_values("l_shipmode")


def q13(t: Tables) -> Any:
    c, o = t["customer"], t["orders"]
    o = o[~o.o_comment.str.contains("special.*requests")]
    j = c.merge(o, left_on="c_custkey", right_on="o_custkey", how="left")
    counts = j.groupby("c_custkey").o_orderkey.count().reset_index()
    counts = counts.rename(columns={"o_orderkey": "c_count"})
    g = counts.groupby("c_count").agg(custdist=("c_custkey", "count")).reset_index()
    return g.sort_values(["custdist", "c_count"], ascending=[False, False])


def q14(t: Tables) -> Any:
    li, p = t["lineitem"], t["part"]
    li = li[(li.l_shipdate >= datetime(1995, 9, 1)) & (li.l_shipdate < datetime(1995, 10, 1))]
    j = li.merge(p, left_on="l_partkey", right_on="p_partkey")
    j = j.assign(revenue=_revenue(j))
    j = j.assign(promo=j.revenue.where(j.p_type.str.startswith("PROMO"), 0))
    return 100.0 * j.promo.sum() / j.revenue.sum()


def q15(t: Tables) -> Any:
    li, s = t["lineitem"], t["supplier"]
    li = li[(li.l_shipdate >= datetime(1996, 1, 1)) & (li.l_shipdate < datetime(1996, 4, 1))]
    li = li.assign(total_revenue=_revenue(li))
    revenue = li.groupby("l_suppkey").total_revenue.sum().reset_index()
    top = revenue[revenue.total_revenue == revenue.total_revenue.max()]
    j = s.merge(top, left_on="s_suppkey", right_on="l_suppkey")
    return j[["s_suppkey", "s_name", "s_address", "s_phone", "total_revenue"]].sort_values(
        "s_suppkey")


def q16(t: Tables) -> Any:
    p, ps, s = t["part"], t["partsupp"], t["supplier"]
    complaints = s[s.s_comment.str.contains("Customer.*Complaints")][["s_suppkey"]]
    ps = ps.merge(complaints, left_on="ps_suppkey", right_on="s_suppkey", how="left")
    ps = ps[ps.s_suppkey.isna()]
    p = p[(p.p_brand != "Brand#45") & ~p.p_type.str.startswith("MEDIUM POLISHED")
          & p.p_size.isin([49, 14, 23, 45, 19, 3, 36, 9])]
    j = p.merge(ps, left_on="p_partkey", right_on="ps_partkey")
    g = j.groupby(["p_brand", "p_type", "p_size"]).ps_suppkey.nunique().reset_index()
    g = g.rename(columns={"ps_suppkey": "supplier_cnt"})
    return g.sort_values(["supplier_cnt", "p_brand", "p_type", "p_size"],
                         ascending=[False, True, True, True])


def q17(t: Tables) -> Any:
    li, p = t["lineitem"], t["part"]
    p = p[(p.p_brand == "Brand#23") & (p.p_container == "MED BOX")][["p_partkey"]]
    j = li.merge(p, left_on="l_partkey", right_on="p_partkey")
    avg = j.groupby("l_partkey").l_quantity.mean().reset_index()
    j = j.merge(avg.rename(columns={"l_quantity": "avg_quantity"}), on="l_partkey")
    j = j[j.l_quantity < 0.2 * j.avg_quantity]
    return j.l_extendedprice.sum() / 7.0


def q18(t: Tables) -> Any:
    c, o, li = t["customer"], t["orders"], t["lineitem"]
    big = li.groupby("l_orderkey").l_quantity.sum().reset_index()
    big = big[big.l_quantity > 300][["l_orderkey"]]
    o = o.merge(big, left_on="o_orderkey", right_on="l_orderkey")[
        ["o_orderkey", "o_custkey", "o_orderdate", "o_totalprice"]]
    j = (o.merge(c, left_on="o_custkey", right_on="c_custkey")
         .merge(li, left_on="o_orderkey", right_on="l_orderkey"))
    g = j.groupby(["c_name", "c_custkey", "o_orderkey", "o_orderdate", "o_totalprice"]).agg(
        sum_qty=("l_quantity", "sum")).reset_index()
    return g.sort_values(["o_totalprice", "o_orderdate", "o_orderkey"],
                         ascending=[False, True, True]).head(100, compute=False)


def q19(t: Tables) -> Any:
    li, p = t["lineitem"], t["part"]
    li = li[li.l_shipmode.isin(["AIR", "AIR REG"]) & (li.l_shipinstruct == "DELIVER IN PERSON")]
    j = li.merge(p, left_on="l_partkey", right_on="p_partkey")
    one = ((j.p_brand == "Brand#12") & j.p_container.isin(["SM CASE", "SM BOX", "SM PACK",
                                                           "SM PKG"])
           & (j.l_quantity >= 1) & (j.l_quantity <= 11) & j.p_size.between(1, 5))
    two = ((j.p_brand == "Brand#23") & j.p_container.isin(["MED BAG", "MED BOX", "MED PKG",
                                                           "MED PACK"])
           & (j.l_quantity >= 10) & (j.l_quantity <= 20) & j.p_size.between(1, 10))
    three = ((j.p_brand == "Brand#34") & j.p_container.isin(["LG CASE", "LG BOX", "LG PACK",
                                                             "LG PKG"])
             & (j.l_quantity >= 20) & (j.l_quantity <= 30) & j.p_size.between(1, 15))
    j = j[one | two | three]
    return _revenue(j).sum()


def q20(t: Tables) -> Any:
    li, p, ps, s, nation = (t[n] for n in ("lineitem", "part", "partsupp", "supplier",
                                           "nation"))
    li = li[(li.l_shipdate >= datetime(1994, 1, 1)) & (li.l_shipdate < datetime(1995, 1, 1))]
    shipped = li.groupby(["l_partkey", "l_suppkey"]).l_quantity.sum().reset_index()
    shipped = shipped.assign(half=0.5 * shipped.l_quantity)
    forest = p[p.p_name.str.startswith("forest")][["p_partkey"]]
    j = (ps.merge(forest, left_on="ps_partkey", right_on="p_partkey")
         .merge(shipped, left_on=["ps_partkey", "ps_suppkey"],
                right_on=["l_partkey", "l_suppkey"]))
    keys = j[j.ps_availqty > j.half][["ps_suppkey"]].drop_duplicates()
    out = (nation[nation.n_name == "CANADA"]
           .merge(s, left_on="n_nationkey", right_on="s_nationkey")
           .merge(keys, left_on="s_suppkey", right_on="ps_suppkey"))
    return out[["s_name", "s_address"]].sort_values("s_name")


def q21(t: Tables) -> Any:
    s, li, o, nation = (t[n] for n in ("supplier", "lineitem", "orders", "nation"))
    li = li[["l_orderkey", "l_suppkey", "l_receiptdate", "l_commitdate"]]
    late = li[li.l_receiptdate > li.l_commitdate]
    suppliers = li.groupby("l_orderkey").l_suppkey.nunique().reset_index()
    late_suppliers = late.groupby("l_orderkey").l_suppkey.nunique().reset_index()
    j = (late.merge(suppliers.rename(columns={"l_suppkey": "n_supp"}), on="l_orderkey")
         .merge(late_suppliers.rename(columns={"l_suppkey": "n_late"}), on="l_orderkey"))
    j = j[(j.n_supp > 1) & (j.n_late == 1)]  # others supplied the order; only this one late
    saudi = nation[nation.n_name == "SAUDI ARABIA"].merge(
        s, left_on="n_nationkey", right_on="s_nationkey")
    j = (j.merge(saudi, left_on="l_suppkey", right_on="s_suppkey")
         .merge(o[o.o_orderstatus == "F"], left_on="l_orderkey", right_on="o_orderkey"))
    g = j.groupby("s_name").agg(numwait=("l_orderkey", "size")).reset_index()
    return g.sort_values(["numwait", "s_name"], ascending=[False, True]).head(100, compute=False)


def q22(t: Tables) -> Any:
    c, o = t["customer"], t["orders"]
    c = c.assign(cntrycode=c.c_phone.str.slice(0, 2))
    c = c[c.cntrycode.isin(["13", "31", "23", "29", "30", "18", "17"])]
    average = c[c.c_acctbal > 0.0].c_acctbal.mean()
    c = c[c.c_acctbal > average]
    ordered = o[["o_custkey"]].drop_duplicates()
    j = c.merge(ordered, left_on="c_custkey", right_on="o_custkey", how="left")
    j = j[j.o_custkey.isna()]
    g = j.groupby("cntrycode").agg(numcust=("c_acctbal", "size"),
                                   totacctbal=("c_acctbal", "sum")).reset_index()
    return g.sort_values("cntrycode")


QUERIES = {f"q{i:02d}": globals()[f"q{i:02d}"] for i in range(1, 23)}
