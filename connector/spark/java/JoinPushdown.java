package io.bpfstore.spark;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.And;
import org.apache.spark.sql.catalyst.expressions.Alias;
import org.apache.spark.sql.catalyst.expressions.Attribute;
import org.apache.spark.sql.catalyst.expressions.EqualTo;
import org.apache.spark.sql.catalyst.expressions.Exists;
import org.apache.spark.sql.catalyst.expressions.ExprId;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.InSet;
import org.apache.spark.sql.catalyst.expressions.InSubquery;
import org.apache.spark.sql.catalyst.expressions.IsNotNull;
import org.apache.spark.sql.catalyst.expressions.NamedExpression;
import org.apache.spark.sql.catalyst.expressions.SubqueryExpression$;
import org.apache.spark.sql.catalyst.expressions.UnsafeRow;
import org.apache.spark.sql.catalyst.plans.Inner$;
import org.apache.spark.sql.catalyst.plans.JoinType;
import org.apache.spark.sql.catalyst.plans.LeftAnti$;
import org.apache.spark.sql.catalyst.plans.LeftOuter$;
import org.apache.spark.sql.catalyst.plans.LeftSemi$;
import org.apache.spark.sql.catalyst.plans.RightOuter$;
import org.apache.spark.sql.catalyst.plans.logical.Aggregate;
import org.apache.spark.sql.catalyst.plans.logical.Filter;
import org.apache.spark.sql.catalyst.plans.logical.Join;
import org.apache.spark.sql.catalyst.plans.logical.LocalRelation;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.Project;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2ScanRelation;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DateType;
import org.apache.spark.sql.types.DecimalType;
import org.apache.spark.sql.types.StringType;
import scala.Option;

/**
 * Join key pushdown. A join between a bpfstore scan and a small side (a local relation, or a
 * subtree with a selective filter whose result has at most {@code maxRows} rows, computed
 * under a limit where that stops early) becomes: the small side computed once, now, into a
 * LocalRelation (so Spark broadcasts it), and a
 * {@code key IN <its keys>} filter on the big side's bpfstore scan, which the rest of the rule
 * sends to the agents as a key set. Only where the answer cannot change: equality keys of the
 * same type, pushed into the side whose unmatched rows the join drops (inner: either side; left
 * semi: the left; left outer: the right; right outer: the left), through filters, projections,
 * grouping keys of aggregates and the preserved sides of other joins. Spark keeps the join,
 * which rechecks every row; NULL keys never match, so they are left out of the set.
 *
 * <p>Off by default: each small side tried is one more Spark job while the query is planned
 * (0.2-0.5 s on a 2-core VM), which TPC-H's joins with a few hundred keys repay many times, and
 * a side found too large, or too little selective, does not
 * (docs/benchmarks/tpch-sf1-spark-joins.md).
 * Settings: {@code spark.bpfstore.pushdown.joins} (default false) and
 * {@code spark.bpfstore.pushdown.joins.maxRows} (default 20000) and {@code ...maxBytes}
 * (default 33554432, 32 MiB): the small side's rows, held on the driver; a larger side is left
 * to Spark, after at most maxRows + 1 of its rows were computed.
 */
final class JoinPushdown {
  static final String ENABLED = "spark.bpfstore.pushdown.joins";
  static final String MAX_ROWS = "spark.bpfstore.pushdown.joins.maxRows";
  static final String MAX_BYTES = "spark.bpfstore.pushdown.joins.maxBytes";
  private static final AtomicLong PUSHED = new AtomicLong();
  private static volatile String lastBail = "";

  private static final scala.collection.immutable.Set<Object> EMPTY =
      scala.collection.immutable.Set$.MODULE$.empty();

  private final SparkSession session;
  private final long maxRows;
  private final long maxBytes;
  private final java.util.Set<LogicalPlan> failed = new java.util.HashSet<>(); // too large

  JoinPushdown(SparkSession session, long maxRows, long maxBytes) {
    this.session = session;
    this.maxRows = maxRows;
    this.maxBytes = maxBytes;
  }

  static long pushed() {
    return PUSHED.get();
  }

  static String lastBail() {
    return lastBail;
  }

  /** Bottom-up, so a join whose input was made small below can itself feed a join above. */
  LogicalPlan apply(LogicalPlan p) {
    List<LogicalPlan> kids = new ArrayList<>();
    boolean changed = false;
    for (LogicalPlan k : Scala.list(p.children())) {
      LogicalPlan r = apply(k);
      changed |= r != k;
      kids.add(r);
    }
    LogicalPlan out = changed ? p.withNewChildren(Scala.seq(kids)) : p;
    if (out instanceof Join j) {
      return rewrite(j);
    }
    return out instanceof Filter f ? rewrite(f) : out;
  }

  private LogicalPlan rewrite(Join j) {
    JoinType t = j.joinType();
    boolean inner = t == Inner$.MODULE$;
    // (small is left?) in the order tried: a left-deep tree's right input is usually a table
    List<Boolean> smallLeft = new ArrayList<>();
    if (inner || t == LeftSemi$.MODULE$ || t == RightOuter$.MODULE$) {
      smallLeft.add(false);
    }
    if (inner || t == LeftOuter$.MODULE$) {
      smallLeft.add(true);
    }
    List<Expression> condition = j.condition().isEmpty() ? List.of()
        : conjuncts(j.condition().get());
    for (boolean left : smallLeft) {
      LogicalPlan small = left ? j.left() : j.right();
      LogicalPlan big = left ? j.right() : j.left();
      Pushed done = push(small, big, keys(condition, small, big));
      if (done != null) {
        return j.withNewChildren(Scala.seq(left ? List.of(done.small, done.big)
            : List.of(done.big, done.small)));
      }
    }
    return j;
  }

  /**
   * WHERE conjuncts {@code x IN (subquery)} and {@code EXISTS (subquery)} (correlated by
   * equalities): Spark turns them into semi joins only after this rule has run. (A subquery's
   * own plan was optimized first, its scans pushed down already: it can give keys, not take
   * them, so a correlated scalar subquery such as Q17's is left alone.)
   */
  private LogicalPlan rewrite(Filter f) {
    List<Expression> terms = new ArrayList<>(conjuncts(f.condition()));
    LogicalPlan child = f.child();
    boolean changed = false;
    for (int i = 0; i < terms.size(); i++) {
      Expression c = terms.get(i);
      LogicalPlan small;
      List<Expression> equalities = new ArrayList<>();
      if (c instanceof InSubquery in) {
        small = in.query().plan();
        List<Expression> values = Scala.list(in.values());
        List<Attribute> output = Scala.list(small.output());
        for (int k = 0; k < values.size() && k < output.size(); k++) {
          equalities.add(new EqualTo(values.get(k), output.get(k)));
        }
        equalities.addAll(Scala.list(in.query().joinCond()));
      } else if (c instanceof Exists ex) {
        small = ex.plan();
        equalities.addAll(Scala.list(ex.joinCond()));
      } else {
        continue;
      }
      List<Expression> flat = new ArrayList<>();
      for (Expression e : equalities) {
        flat.addAll(conjuncts(e));
      }
      Pushed done = push(small, child, keys(flat, small, child));
      if (done != null) {
        terms.set(i, c instanceof InSubquery in ? new InSubquery(in.values(),
            in.query().withNewPlan(done.small)) : ((Exists) c).withNewPlan(done.small));
        child = done.big;
        changed = true;
      }
    }
    if (!changed) {
      return f;
    }
    Expression condition = terms.get(0);
    for (Expression c : terms.subList(1, terms.size())) {
      condition = new And(condition, c);
    }
    return new Filter(condition, child);
  }

  private record Pushed(LogicalPlan small, LogicalPlan big) {}

  /** The small side computed and its keys on the big side, or null (nothing changes). */
  private Pushed push(LogicalPlan small, LogicalPlan big, List<Attribute[]> keys) {
    if (keys.isEmpty() || !small.deterministic() || !candidate(small) || !streams(small)
        || failed.contains(small)) {
      return null;
    }
    List<Attribute[]> reachable = new ArrayList<>();
    for (Attribute[] k : keys) {
      if (insert(big, k[1].exprId(), EMPTY) != null) {
        reachable.add(k);
      }
    }
    if (reachable.isEmpty()) {
      return null;
    }
    Optional<LocalRelation> local = computed(small);
    if (local.isEmpty()) {
      failed.add(small);
      return null;
    }
    LogicalPlan filtered = big;
    for (Attribute[] k : reachable) {
      filtered = insert(filtered, k[1].exprId(), values(local.get(), k[0]));
    }
    PUSHED.incrementAndGet();
    // the new key filters may make a join inside the big side small enough in turn
    return new Pushed(local.get(), apply(filtered));
  }

  /** Equality keys (small side's attribute, big side's attribute) of one pushable type. */
  private static List<Attribute[]> keys(List<Expression> condition, LogicalPlan small,
      LogicalPlan big) {
    List<Attribute[]> out = new ArrayList<>();
    for (Expression c : condition) {
      if (c instanceof EqualTo eq && eq.left() instanceof Attribute a
          && eq.right() instanceof Attribute b && a.dataType().sameType(b.dataType())
          && keyType(a.dataType())) {
        if (small.outputSet().contains(a) && big.outputSet().contains(b)) {
          out.add(new Attribute[] {a, b});
        } else if (small.outputSet().contains(b) && big.outputSet().contains(a)) {
          out.add(new Attribute[] {b, a});
        }
      }
    }
    return out;
  }

  /** Integers, dates, decimals and plain strings: the types key sets compare exactly. */
  private static boolean keyType(DataType t) {
    return Translate.integral(t) || t instanceof DateType || t instanceof DecimalType
        || (t instanceof StringType && t.sql().equals("STRING"));
  }

  /**
   * Worth computing now: every input is a local relation or under a selective filter (not
   * just the IS NOT NULL that Spark infers on every join key), so the side is likely small.
   */
  private static boolean candidate(LogicalPlan p) {
    if (p instanceof LocalRelation) {
      return true;
    }
    if (p instanceof Filter f && selective(List.of(f.condition()))) {
      return true;
    }
    DataSourceV2Relation rel = Scala.bpfstore(
        p instanceof DataSourceV2ScanRelation s ? s.relation() : p);
    if (rel != null && rel.options().containsKey(Scala.SELECTIVE)) {
      return true; // a subquery optimized already: its filter went to the agents
    }
    List<LogicalPlan> kids = Scala.list(p.children());
    if (kids.isEmpty()) {
      return false;
    }
    return kids.stream().allMatch(JoinPushdown::candidate);
  }

  /** Some conjunct is more than the IS NOT NULL Spark infers on join keys. */
  static boolean selective(List<Expression> conditions) {
    return conditions.stream().flatMap(c -> conjuncts(c).stream())
        .anyMatch(c -> !(c instanceof IsNotNull));
  }

  /**
   * The small side as a LocalRelation with its own attributes, or empty: more than maxRows rows
   * or maxBytes, or it failed (Spark then runs it as before and reports any error itself).
   */
  private Optional<LocalRelation> computed(LogicalPlan small) {
    if (small instanceof LocalRelation l) {
      return Optional.of(l);
    }
    InternalRow[] rows;
    try {
      rows = org.apache.spark.sql.classic.Dataset
          .ofRows((org.apache.spark.sql.classic.SparkSession) session, small)
          .limit((int) Math.min(maxRows + 1, Integer.MAX_VALUE))
          .queryExecution().executedPlan().executeCollect();
    } catch (RuntimeException e) {
      if (Thread.currentThread().isInterrupted()) {
        throw e; // the query was cancelled: not a reason to plan on
      }
      lastBail = "small side failed: " + e;
      return Optional.empty();
    }
    if (rows.length > maxRows) {
      lastBail = "small side has more than " + maxRows + " rows";
      return Optional.empty();
    }
    List<InternalRow> copies = new ArrayList<>();
    long bytes = 0;
    for (InternalRow r : rows) {
      InternalRow copy = r instanceof UnsafeRow u ? u.copy() : r.copy();
      bytes += copy instanceof UnsafeRow u ? u.getSizeInBytes() : 64L * r.numFields();
      copies.add(copy);
    }
    if (bytes > maxBytes) {
      lastBail = "small side has more than " + maxBytes + " bytes";
      return Optional.empty();
    }
    return Optional.of(new LocalRelation(small.output(), Scala.seq(copies), false,
        Option.empty()));
  }

  /**
   * Computing `p` under a limit stops early: scans, filters, projections, and joins that
   * broadcast a local relation (as one made small below). A join of two scans would shuffle
   * both first, so it is never tried, nor a node with a subquery; an aggregate (a HAVING's
   * input) is computed whole.
   */
  private static boolean streams(LogicalPlan p) {
    for (Expression e : Scala.list(p.expressions())) {
      if (SubqueryExpression$.MODULE$.hasSubquery(e)) {
        return false; // Q21's EXISTS over lineitem: its semi join reads the whole subquery
      }
    }
    if (p instanceof LocalRelation || p instanceof DataSourceV2ScanRelation
        || Scala.bpfstore(p) != null) {
      return true;
    }
    if (p instanceof Project || p instanceof Filter || p instanceof Aggregate) {
      return streams(p.children().head());
    }
    if (p instanceof Join j) {
      return (j.left() instanceof LocalRelation && streams(j.right()))
          || (j.right() instanceof LocalRelation && streams(j.left()));
    }
    return false;
  }

  /** The distinct non-NULL values of `key` in the relation, as Catalyst values. */
  private static scala.collection.immutable.Set<Object> values(LocalRelation l, Attribute key) {
    List<Attribute> output = Scala.list(l.output());
    int ordinal = -1;
    for (int i = 0; i < output.size(); i++) {
      if (output.get(i).exprId().equals(key.exprId())) {
        ordinal = i;
      }
    }
    java.util.Set<Object> out = new java.util.HashSet<>();
    for (InternalRow r : Scala.list(l.data())) {
      if (!r.isNullAt(ordinal)) {
        Object v = r.get(ordinal, key.dataType());
        out.add(v instanceof org.apache.spark.unsafe.types.UTF8String s ? s.clone() : v);
      }
    }
    return scala.jdk.javaapi.CollectionConverters.asScala(out).toSet();
  }

  /**
   * `p` with a Filter(`filter`) on the bpfstore relation column that `key` stands for, or null
   * where that column is not reachable without changing the answer (or already has a key set).
   */
  private static LogicalPlan insert(LogicalPlan p, ExprId key,
      scala.collection.immutable.Set<Object> values) {
    if (!p.deterministic()) {
      return null; // a filter moved below rand() would change which rows it sees
    }
    DataSourceV2Relation rel = Scala.bpfstore(p);
    if (rel != null) {
      if (Scala.rewritten(rel)) {
        return null;
      }
      for (Attribute a : Scala.list(rel.output())) {
        if (a.exprId().equals(key)) {
          return new Filter(new InSet(a, values), rel);
        }
      }
      return null;
    }
    if (p instanceof Filter f) {
      for (Expression c : conjuncts(f.condition())) {
        if (c instanceof InSet s && s.child() instanceof Attribute a && a.exprId().equals(key)) {
          return null; // pushed already (this plan is a small side being computed)
        }
      }
      return below(f, f.child(), key, values);
    }
    if (p instanceof Project pr) {
      ExprId under = passedThrough(Scala.<NamedExpression>list(pr.projectList()), key);
      return under == null ? null : below(pr, pr.child(), under, values);
    }
    if (p instanceof Aggregate a) {
      ExprId under = passedThrough(Scala.<NamedExpression>list(a.aggregateExpressions()), key);
      boolean grouped = under != null && Scala.list(a.groupingExpressions()).stream()
          .anyMatch(g -> g instanceof Attribute ga && ga.exprId().equals(under));
      return grouped ? below(a, a.child(), under, values) : null;
    }
    if (p instanceof Join j) {
      JoinType t = j.joinType();
      boolean fromLeft = Scala.list(j.left().output()).stream()
          .anyMatch(a -> a.exprId().equals(key));
      boolean ok = t == Inner$.MODULE$
          || (fromLeft && (t == LeftSemi$.MODULE$ || t == LeftAnti$.MODULE$
              || t == LeftOuter$.MODULE$))
          || (!fromLeft && t == RightOuter$.MODULE$);
      if (!ok) {
        return null;
      }
      LogicalPlan side = insert(fromLeft ? j.left() : j.right(), key, values);
      if (side == null) {
        return null;
      }
      return j.withNewChildren(Scala.seq(fromLeft ? List.of(side, j.right())
          : List.of(j.left(), side)));
    }
    return null;
  }

  private static LogicalPlan below(LogicalPlan p, LogicalPlan child, ExprId key,
      scala.collection.immutable.Set<Object> values) {
    LogicalPlan c = insert(child, key, values);
    return c == null ? null : p.withNewChildren(Scala.seq(List.of(c)));
  }

  /** The child attribute an output attribute `key` is (itself, or an alias of it), or null. */
  private static ExprId passedThrough(List<NamedExpression> outputs, ExprId key) {
    for (NamedExpression ne : outputs) {
      if (!ne.exprId().equals(key)) {
        continue;
      }
      if (ne instanceof Attribute a) {
        return a.exprId();
      }
      if (ne instanceof Alias al && al.child() instanceof Attribute a) {
        return a.exprId();
      }
      return null;
    }
    return null;
  }

  private static List<Expression> conjuncts(Expression e) {
    return BpfstoreRule.conjuncts(e);
  }
}
