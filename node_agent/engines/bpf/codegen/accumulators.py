"""Accumulator layout: COUNT, SUM (128 bits, or 64 where statistics prove the total fits)
and MIN/MAX in registers (no GROUP BY) or in words of a group's accumulators: in the arena
(hot path), or in the run's slot of a BPF array map (cold and bcc paths: `acc`, a value of
GROUP_CAP groups; template.py)."""

from __future__ import annotations

import pyarrow as pa

from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import AggFunc, Column, Expr

from .expressions import Expressions
from .overflow import I64_MAX, I64_MIN, fits_64

MAX_GROUPS = 4096
ACC_BYTES = 4 << 20  # a run's group accumulators at most (hot: at the start of the arena)


class Compiler(Expressions):
    """One program: predicate terms (expressions.py) then its groups and aggregates."""

    def group(self, keys: tuple[str, ...]) -> None:
        """Group ids from key columns; unselected rows go to an extra, ignored group."""
        # Each key's base and multiplier, and the number of groups, are partition
        # constants: they travel in the context, so the C is one shape for every partition.
        terms, groups = [], 1
        for j, name in reversed(list(enumerate(keys))):  # row-major: the last key varies fastest
            base, top = self.bounds(name)
            card = top - base + 1
            value = self.value(name, codes=True)
            self.p.fields += [(f"kb{j}", "u64"), (f"km{j}", "u64")]
            self.p.values.update({f"kb{j}": base % 2**64, f"km{j}": groups})
            self.setup.append(f"u64 kb{j} = c->kb{j}, km{j} = c->km{j};")
            terms.append(f"((u64){value} - kb{j}) * km{j}")
            self.p.keys.insert(0, (name, base, card))
            groups *= card
            if groups > MAX_GROUPS:
                raise Unsupported(f"bpf: more than {MAX_GROUPS} possible groups")
        self.p.groups, self.p.stride, self.p.initial = groups, 1, [0]
        self.p.values["groups"] = groups
        group = f"u64 g = {' + '.join(terms)}; g = (g & mask) | (groups & ~mask);"
        if self.path in ("cold", "bcc"):  # the slot's value in a map of GROUP_CAP groups
            self.p.fields.append(("groups", "u64"))
            self.setup.append("u64 groups = c->groups;")
            # g <= groups < GROUP_CAP, a power of two: the mask changes nothing, and shows
            # the verifier that every group's words lie inside the map value
            self.accumulate.append(f"{group} g &= GROUP_CAP - 1;")
            self.accumulate.append("u64 *a = acc + g * STRIDE; a[0] += 1;")
            return
        self.p.fields += [("acc", "u64"), ("groups", "u64")]
        self.setup.append("u64 __arena *acc = (u64 __arena *)c->acc; u64 groups = c->groups;")
        self.accumulate.append(group)
        self.accumulate.append("u64 __arena *a = acc + g * STRIDE; a[0] += 1;")

    def words(self, *initial: int) -> int:
        slot = self.p.stride
        self.p.stride += len(initial)
        self.p.initial += list(initial)
        return slot

    def grouped_aggregate(self, func: AggFunc, arg: Expr | None, out_type: pa.DataType) -> None:
        ok = self.validity(arg) if arg is not None else None
        if func in (AggFunc.COUNT_STAR, AggFunc.COUNT):
            if arg is not None:
                self.expr(arg)
            if ok is None:
                self.p.outputs.append(("count", None, 0))
                return
            n = self.words(0)
            self.accumulate.append(f"a[{n}] += {ok};")
            self.p.outputs.append(("count", None, n))
            return
        assert arg is not None
        keep = f" & (0 - ({ok}))" if ok else ""
        if func is AggFunc.SUM:
            code, _, bounds = self.expr(arg)
            w = self.words(0, 0)
            if fits_64(bounds, self.rows):  # the group's total fits: plain adds, hi word unused
                self.p.narrow.append(w)
                self.accumulate.append(f"{{ s64 v = {code}; a[{w}] += (u64)v{keep}; }}")
            else:
                self.accumulate.append(
                    f"{{ s64 v = {code}; ADD128(a[{w}], a[{w + 1}], (u64)v{keep}); }}")
        else:
            if not isinstance(arg, Column):
                raise Unsupported(f"bpf: {func.value} of an expression")
            code, _, _ = self.expr(arg)
            w = self.words(I64_MAX if func is AggFunc.MIN else I64_MIN)
            test = "less_mask(v, m)" if func is AggFunc.MIN else "less_mask(m, v)"
            self.accumulate.append(f"{{ s64 v = {code}; s64 m = (s64)a[{w}]; "
                                   f"m ^= (m ^ v) & {test}{keep}; a[{w}] = (u64)m; }}")
        n = 0
        if ok:
            n = self.words(0)
            self.accumulate.append(f"a[{n}] += {ok};")
        self.p.slots.append(w)
        self.p.outputs.append((func.value, out_type, n))

    def aggregate(self, index: int, func: AggFunc, arg: Expr | None, out_type: pa.DataType
                  ) -> None:
        if self.p.groups:
            if func in (AggFunc.COUNT_STAR, AggFunc.COUNT):
                self.p.slots.append(0)
            self.grouped_aggregate(func, arg, out_type)
            return
        k = index
        ok = self.validity(arg) if arg is not None else None
        counter = "count"
        if ok:  # NULL inputs are skipped: count this aggregate's own inputs
            counter = f"n{k}"
            self.p.fields.append((counter, "u64"))
            self.setup.append(f"u64 {counter} = 0;")
            self.accumulate.append(f"{counter} += mask & ({ok});")
            self.store.append(f"c->{counter} += {counter};")
        keep = f" & (0 - ({ok}))" if ok else ""
        if func in (AggFunc.COUNT_STAR, AggFunc.COUNT):
            if arg is not None:
                self.expr(arg)
            self.p.outputs.append(("count", None, counter))
            return
        assert arg is not None
        if func is AggFunc.SUM:
            code, _, bounds = self.expr(arg)
            self.p.fields += [(f"slo{k}", "u64"), (f"shi{k}", "u64")]
            if fits_64(bounds, self.rows):  # the call's total fits in 64 bits: no carry per row
                self.setup.append(f"s64 s{k} = 0;")
                self.accumulate.append(f"{{ s64 v = {code}; s{k} += (s64)((u64)v & mask{keep}); }}")
                self.store.append(f"ADD128(c->slo{k}, c->shi{k}, s{k});")
            else:
                self.setup.append(f"u64 slo{k} = 0, shi{k} = 0;")
                self.accumulate.append(
                    f"{{ s64 v = {code}; ADD128(slo{k}, shi{k}, (u64)v & mask{keep}); }}")
                self.store.append(
                    f"{{ u64 o = c->slo{k}, n = o + slo{k}; "
                    f"c->shi{k} += shi{k} + (((o & slo{k}) | ((o | slo{k}) & ~n)) >> 63); "
                    f"c->slo{k} = n; }}")
            self.p.outputs.append(("sum", out_type, counter))
            return
        if not isinstance(arg, Column):
            raise Unsupported(f"bpf: {func.value} of an expression")
        code, _, _ = self.expr(arg)
        name = f"m{k}"
        self.p.fields.append((name, "s64"))
        self.p.values[name] = I64_MAX if func is AggFunc.MIN else I64_MIN
        self.setup.append(f"s64 {name} = (s64)c->{name};")
        test = f"less_mask(v, {name})" if func is AggFunc.MIN else f"less_mask({name}, v)"
        self.accumulate.append(
            f"{{ s64 v = {code}; {name} ^= ({name} ^ v) & {test} & mask{keep}; }}")
        self.store.append(f"c->{name} = {name};")
        self.p.outputs.append((func.value, out_type, counter))
