package io.bpfstore.spark;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.expressions.And;
import org.apache.spark.sql.catalyst.expressions.Attribute;
import org.apache.spark.sql.catalyst.expressions.AttributeReference;
import org.apache.spark.sql.catalyst.expressions.ExprId;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.plans.logical.Aggregate;
import org.apache.spark.sql.catalyst.plans.logical.Filter;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.Project;
import org.apache.spark.sql.catalyst.rules.Rule;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * The pre-CBO rule. Settings: {@code spark.bpfstore.pushdown} (default true: aggregates, whole
 * filter trees, column pruning), {@code spark.bpfstore.pushdown.aggregates} (default true; false
 * keeps filter trees and column pruning but leaves aggregates to Spark), {@code
 * spark.bpfstore.pushdown.joins} (default false: {@link JoinPushdown}) and {@code
 * spark.bpfstore.resetReadInfo} (default true: the
 * guard against Spark 4.1-4.3's stale Python reader; only a regression test turns it off).
 */
public final class BpfstoreRule extends Rule<LogicalPlan> {
  private static final AtomicLong AGGREGATES = new AtomicLong();
  private static final AtomicLong SCANS = new AtomicLong();
  private static volatile String lastBail = "";

  private final SparkSession session;

  BpfstoreRule(SparkSession session) {
    this.session = session;
  }

  /** Aggregates rewritten into partial-aggregate scans so far (for tests and demos). */
  public static long aggregatesPushed() {
    return AGGREGATES.get();
  }

  /** Scans rewritten with pruned columns or a whole filter tree so far. */
  public static long scansPushed() {
    return SCANS.get();
  }

  /** Joins given the keys of their small side so far. */
  public static long joinsPushed() {
    return JoinPushdown.pushed();
  }

  /** Why the last join's small side was left to Spark. */
  public static String lastJoinBail() {
    return JoinPushdown.lastBail();
  }

  /** Why the last aggregate was left to Spark. */
  public static String lastBail() {
    return lastBail;
  }

  private boolean setting(String key) {
    return Boolean.parseBoolean(conf().getConfString(key, "true"));
  }

  @Override
  public LogicalPlan apply(LogicalPlan plan) {
    if (setting("spark.bpfstore.resetReadInfo")) {
      plan.foreachWithSubqueries(new AbstractFunction1<>() {
        @Override
        public BoxedUnit apply(LogicalPlan node) {
          DataSourceV2Relation r = Scala.bpfstore(node);
          if (r != null) {
            Scala.resetReadInfo(r);
          }
          return BoxedUnit.UNIT;
        }
      });
    }
    if (!setting("spark.bpfstore.pushdown")) {
      return plan;
    }
    if (Boolean.parseBoolean(conf().getConfString(JoinPushdown.ENABLED, "false"))) {
      long maxRows = Long.parseLong(conf().getConfString(JoinPushdown.MAX_ROWS, "20000"));
      long maxBytes = Long.parseLong(conf().getConfString(JoinPushdown.MAX_BYTES, "33554432"));
      plan = new JoinPushdown(session, maxRows, maxBytes).apply(plan);
    }
    return rewrite(plan);
  }

  private LogicalPlan rewrite(LogicalPlan p) {
    if (p instanceof Aggregate a && setting("spark.bpfstore.pushdown.aggregates")) {
      try {
        LogicalPlan out = AggPushdown.rewrite(session, a);
        AGGREGATES.incrementAndGet();
        return out;
      } catch (Bail b) {
        lastBail = b.getMessage();
      }
    }
    if (p instanceof Project || p instanceof Filter) {
      LogicalPlan out = pruneScan(p);
      if (out != null) {
        return out;
      }
    }
    List<LogicalPlan> kids = Scala.list(p.children());
    List<LogicalPlan> rewritten = new ArrayList<>();
    boolean changed = false;
    for (LogicalPlan k : kids) {
      LogicalPlan r = rewrite(k);
      changed |= r != k;
      rewritten.add(r);
    }
    return changed ? p.withNewChildren(Scala.seq(rewritten)) : p;
  }

  /**
   * Project|Filter... over a bpfstore relation: read only the columns the chain needs, and send
   * every translatable conjunct (OR trees, casts, arithmetic included) to the agents. Spark keeps
   * its Filter, so a conjunct that stays with Spark, or is pushed twice, costs nothing in truth.
   */
  private LogicalPlan pruneScan(LogicalPlan top) {
    List<Expression> conditions = new ArrayList<>();
    Set<ExprId> needed = new LinkedHashSet<>();
    boolean everything = !(top instanceof Project);
    LogicalPlan p = top;
    while (p instanceof Project || p instanceof Filter) {
      if (p instanceof Project pr) {
        collect(pr.projectList(), needed);
        p = pr.child();
      } else {
        Filter f = (Filter) p;
        conditions.add(f.condition());
        collect(f.condition().references(), needed);
        p = f.child();
      }
    }
    DataSourceV2Relation rel = Scala.bpfstore(p);
    if (rel == null || Scala.rewritten(rel)) {
      return null;
    }
    List<AttributeReference> output = Scala.list(rel.output());
    Map<ExprId, String> columns = new HashMap<>();
    for (AttributeReference a : output) {
      columns.put(a.exprId(), a.name());
    }
    Translate t = new Translate(columns, Map.of());
    List<String> pushed = new ArrayList<>();
    for (Expression c : conditions) {
      for (Expression term : conjuncts(c)) {
        try {
          pushed.add(t.expr(term));
        } catch (Bail b) {
          // stays with Spark only
        }
      }
    }
    List<AttributeReference> keep = new ArrayList<>();
    for (AttributeReference a : output) {
      if (everything || needed.contains(a.exprId())) {
        keep.add(a);
      }
    }
    if (keep.isEmpty()) {
      keep.add(output.get(0)); // Spark still needs rows to count
    }
    if (keep.size() == output.size() && pushed.isEmpty()) {
      return null;
    }
    List<StructField> fields = new ArrayList<>();
    for (AttributeReference a : keep) {
      fields.add(new StructField(a.name(), a.dataType(), true, a.metadata()));
    }
    Map<String, String> extra = new HashMap<>();
    extra.put(Scala.PRUNED, "true");
    if (JoinPushdown.selective(conditions)) {
      extra.put(Scala.SELECTIVE, "true"); // a join may compute this side first
    }
    if (!pushed.isEmpty()) {
      extra.put(Scala.FILTER, pushed.size() == 1 ? pushed.get(0)
          : Json.obj("op", Json.str("and"), "args", Json.list(pushed)));
    }
    DataSourceV2Relation scan = Scala.load(session, rel,
        new StructType(fields.toArray(new StructField[0])), extra);
    // Same table and options, but the original attributes: nothing above needs re-resolving.
    DataSourceV2Relation swapped = new DataSourceV2Relation(scan.table(), Scala.seq(keep),
        scan.catalog(), scan.identifier(), scan.options(), scan.timeTravelSpec());
    SCANS.incrementAndGet();
    return replaceLeaf(top, swapped);
  }

  private static LogicalPlan replaceLeaf(LogicalPlan p, LogicalPlan leaf) {
    if (p instanceof Project || p instanceof Filter) {
      return p.withNewChildren(Scala.seq(List.of(replaceLeaf(p.children().head(), leaf))));
    }
    return leaf;
  }

  private static void collect(scala.collection.Iterable<?> exprs, Set<ExprId> into) {
    for (Object o : Scala.list(exprs)) {
      Expression e = (Expression) o;
      for (Attribute a : Scala.list(e.references())) {
        into.add(a.exprId());
      }
      if (e instanceof Attribute a) {
        into.add(a.exprId());
      }
    }
  }

  static List<Expression> conjuncts(Expression e) {
    if (e instanceof And a) {
      List<Expression> out = new ArrayList<>(conjuncts(a.left()));
      out.addAll(conjuncts(a.right()));
      return out;
    }
    return List.of(e);
  }
}
