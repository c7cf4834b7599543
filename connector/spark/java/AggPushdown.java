package io.bpfstore.spark;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.expressions.Alias;
import org.apache.spark.sql.catalyst.expressions.Attribute;
import org.apache.spark.sql.catalyst.expressions.AttributeReference;
import org.apache.spark.sql.catalyst.expressions.Cast;
import org.apache.spark.sql.catalyst.expressions.Coalesce;
import org.apache.spark.sql.catalyst.expressions.DecimalDivideWithOverflowCheck;
import org.apache.spark.sql.catalyst.expressions.Divide;
import org.apache.spark.sql.catalyst.expressions.EqualTo;
import org.apache.spark.sql.catalyst.expressions.EvalMode;
import org.apache.spark.sql.catalyst.expressions.ExprId;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.If;
import org.apache.spark.sql.catalyst.expressions.Literal;
import org.apache.spark.sql.catalyst.expressions.NamedExpression;
import org.apache.spark.sql.catalyst.expressions.NumericEvalContext;
import org.apache.spark.sql.catalyst.expressions.aggregate.AggregateExpression;
import org.apache.spark.sql.catalyst.expressions.aggregate.AggregateFunction;
import org.apache.spark.sql.catalyst.expressions.aggregate.Average;
import org.apache.spark.sql.catalyst.expressions.aggregate.Complete$;
import org.apache.spark.sql.catalyst.expressions.aggregate.Count;
import org.apache.spark.sql.catalyst.expressions.aggregate.Max;
import org.apache.spark.sql.catalyst.expressions.aggregate.Min;
import org.apache.spark.sql.catalyst.expressions.aggregate.Sum;
import org.apache.spark.sql.catalyst.plans.logical.Aggregate;
import org.apache.spark.sql.catalyst.plans.logical.Filter;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.Project;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import org.apache.spark.sql.types.BooleanType$;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DecimalType;
import org.apache.spark.sql.types.DoubleType;
import org.apache.spark.sql.types.DoubleType$;
import org.apache.spark.sql.types.LongType;
import org.apache.spark.sql.types.LongType$;
import org.apache.spark.sql.types.Metadata;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import scala.Enumeration;
import scala.Option;

/**
 * Aggregate(Project|Filter...(bpfstore relation)) -> Project(final) <- Aggregate(merge) <- a
 * bpfstore scan of per-partition partial aggregates. Partials have Spark's own aggregation-buffer
 * types; the final Project rebuilds each result with the expression Spark's aggregate would have
 * used (its evaluate step), keeps the original names and ids, and must have the original type.
 */
final class AggPushdown {
  private record Partial(String json, StructField field, String merge, NumericEvalContext ctx,
      AttributeReference merged) {}

  private final SparkSession session;
  private final Translate translate;
  private final Map<ExprId, Integer> groupIndex = new HashMap<>();
  private final List<String> groupColumns = new ArrayList<>();
  private final List<StructField> groupFields = new ArrayList<>();
  private final Map<String, Integer> partialIndex = new LinkedHashMap<>();
  private final List<Partial> partials = new ArrayList<>();
  private List<AttributeReference> relOutput; // set once the partial scan exists

  private AggPushdown(SparkSession session, Translate translate) {
    this.session = session;
    this.translate = translate;
  }

  static LogicalPlan rewrite(SparkSession session, Aggregate agg) throws Bail {
    List<Expression> conditions = new ArrayList<>();
    Map<ExprId, Expression> aliases = new HashMap<>();
    LogicalPlan p = agg.child();
    while (p instanceof Project || p instanceof Filter) {
      if (p instanceof Project pr) {
        for (NamedExpression ne : Scala.list(pr.projectList())) {
          if (ne instanceof Alias al) {
            aliases.put(al.exprId(), al.child());
          } else if (!(ne instanceof Attribute)) {
            throw new Bail("projection " + ((Expression) ne).sql());
          }
        }
        p = pr.child();
      } else {
        Filter f = (Filter) p;
        conditions.add(f.condition());
        p = f.child();
      }
    }
    DataSourceV2Relation rel = Scala.bpfstore(p);
    if (rel == null || Scala.rewritten(rel)) {
      throw new Bail("not over a bpfstore relation");
    }
    Map<ExprId, String> columns = new HashMap<>();
    for (AttributeReference a : Scala.list(rel.output())) {
      columns.put(a.exprId(), a.name());
    }
    AggPushdown r = new AggPushdown(session, new Translate(columns, aliases));
    return r.build(agg, rel, conditions);
  }

  private LogicalPlan build(Aggregate agg, DataSourceV2Relation rel, List<Expression> conditions)
      throws Bail {
    List<String> filters = new ArrayList<>();
    for (Expression c : conditions) {
      filters.add(translate.expr(c)); // an aggregate needs its whole filter on the agents
    }
    for (Expression g : Scala.list(agg.groupingExpressions())) {
      String name = translate.column(g);
      if (!(g instanceof Attribute ga) || name == null) {
        throw new Bail("grouping by an expression");
      }
      Translate.typeName(ga.dataType());
      groupIndex.put(ga.exprId(), groupColumns.size());
      groupColumns.add(name);
      groupFields.add(new StructField(unique(name), ga.dataType(), true, Metadata.empty()));
    }
    List<NamedExpression> outputs = Scala.list(agg.aggregateExpressions());
    for (NamedExpression ne : outputs) { // first pass: register every partial
      finalExpr((Expression) ne);
    }
    String filter = filters.isEmpty() ? "null"
        : filters.size() == 1 ? filters.get(0)
        : Json.obj("op", Json.str("and"), "args", Json.list(filters));
    List<String> groupJson = new ArrayList<>();
    for (String g : groupColumns) {
      groupJson.add(Json.str(g));
    }
    List<String> partialJson = new ArrayList<>();
    List<StructField> fields = new ArrayList<>(groupFields);
    for (Partial p : partials) {
      partialJson.add(p.json());
      fields.add(p.field());
    }
    String spec = Json.obj("filter", filter, "groups", Json.list(groupJson),
        "partials", Json.list(partialJson));
    Map<String, String> extra = new HashMap<>(Map.of(Scala.AGG, spec));
    if (JoinPushdown.selective(conditions)) {
      extra.put(Scala.SELECTIVE, "true");
    }
    DataSourceV2Relation scan = Scala.load(session, rel,
        new StructType(fields.toArray(new StructField[0])), extra);
    relOutput = Scala.list(scan.output());

    List<NamedExpression> merge = new ArrayList<>();
    List<Expression> groupBy = new ArrayList<>();
    for (int i = 0; i < groupColumns.size(); i++) {
      groupBy.add(relOutput.get(i));
      merge.add(relOutput.get(i));
    }
    for (int k = 0; k < partials.size(); k++) {
      Partial p = partials.get(k);
      Expression in = relOutput.get(groupColumns.size() + k);
      AggregateFunction fn = switch (p.merge()) {
        case "min" -> new Min(in);
        case "max" -> new Max(in);
        default -> new Sum(in, p.ctx());
      };
      merge.add(alias(fn.toAggregateExpression(), p.merged().name(), p.merged().exprId(),
          Scala.seq(List.of())));
    }
    List<NamedExpression> finals = new ArrayList<>();
    for (NamedExpression ne : outputs) { // second pass: the final expressions
      Expression original = (Expression) ne;
      Expression e = finalExpr(original);
      if (!e.dataType().equals(original.dataType()) || (e.nullable() && !original.nullable())) {
        throw new Bail("result type " + e.dataType().sql() + " != " + original.dataType().sql());
      }
      finals.add(alias(e, ne.name(), ne.exprId(), ne.qualifier()));
    }
    Aggregate merged = new Aggregate(Scala.seq(groupBy), Scala.seq(merge), scan, Option.empty());
    return new Project(Scala.seq(finals), merged);
  }

  private static Alias alias(Expression e, String name, ExprId id,
      scala.collection.immutable.Seq<String> qualifier) {
    return new Alias(e, name, id, qualifier, Option.empty(), Scala.seq(List.of()));
  }

  private String unique(String name) {
    String n = name;
    for (int i = 1; nameTaken(n); i++) {
      n = name + "#" + i;
    }
    return n;
  }

  private boolean nameTaken(String n) {
    return groupFields.stream().anyMatch(f -> f.name().equals(n))
        || partials.stream().anyMatch(p -> p.field().name().equals(n));
  }

  /** The output expression over the merged partials (placeholders during the first pass). */
  private Expression finalExpr(Expression e) throws Bail {
    if (e instanceof Alias al) {
      return finalExpr(al.child());
    }
    if (e instanceof AggregateExpression ae) {
      return aggregate(ae);
    }
    if (e instanceof Attribute a) {
      Integer g = groupIndex.get(a.exprId());
      if (g == null) {
        throw new Bail("attribute outside the grouping keys " + a.sql());
      }
      return relOutput == null ? a : relOutput.get(g);
    }
    List<Expression> kids = new ArrayList<>();
    for (Expression c : Scala.list(e.children())) {
      kids.add(finalExpr(c));
    }
    return kids.isEmpty() ? e : e.withNewChildren(Scala.seq(kids));
  }

  private Expression aggregate(AggregateExpression ae) throws Bail {
    if (ae.isDistinct() || ae.filter().isDefined() || ae.mode() != Complete$.MODULE$) {
      throw new Bail("DISTINCT or FILTER aggregate");
    }
    AggregateFunction f = ae.aggregateFunction();
    if (f instanceof Count c) {
      List<Expression> args = Scala.list(c.children());
      if (args.size() != 1) {
        throw new Bail("count of several columns");
      }
      Expression arg = args.get(0);
      boolean star = arg instanceof Literal l && l.value() != null;
      int k = star ? partial("count_star", null, "count(*)", LongType$.MODULE$, true, "sum", null)
          : partial("count", translate.expr(arg), "count(" + Scala.label(arg) + ")",
              LongType$.MODULE$, true, "sum", null);
      return count(k);
    }
    if (f instanceof Sum s) {
      return sum(s);
    }
    if (f instanceof Average a) {
      return average(a);
    }
    if (f instanceof Min || f instanceof Max) {
      Expression arg = f.children().head();
      String fn = f instanceof Min ? "min" : "max";
      Translate.typeName(arg.dataType());
      return merged(partial(fn, translate.expr(arg), fn + "(" + Scala.label(arg) + ")",
          arg.dataType(), true, fn, null));
    }
    throw new Bail("aggregate " + f.prettyName());
  }

  private Expression sum(Sum s) throws Bail {
    DataType r = s.dataType();
    Expression arg = s.child();
    Enumeration.Value mode = s.evalContext().evalMode();
    boolean ansi = mode == EvalMode.ANSI();
    String label = "sum(" + Scala.label(arg) + ")";
    if (r instanceof DecimalType && arg.dataType() instanceof DecimalType) {
      int k = partial("sum", translate.expr(arg), label, r, ansi, "sum", s.evalContext());
      return overflowToNull(k, ansi, castTo(merged(k), r, mode), r);
    }
    if (r instanceof LongType && Translate.integral(arg.dataType())) {
      return merged(partial("sum", translate.expr(arg), label, r, ansi, "sum", s.evalContext()));
    }
    if (r instanceof DoubleType && Translate.numeric(arg.dataType())
        && !(arg.dataType() instanceof DecimalType)) {
      return merged(partial("sum", asDouble(arg), label, r, ansi, "sum", s.evalContext()));
    }
    throw new Bail("sum of " + arg.dataType().sql());
  }

  private Expression average(Average a) throws Bail {
    DataType r = a.dataType();
    Expression arg = a.child();
    Enumeration.Value mode = a.evalMode();
    boolean ansi = mode == EvalMode.ANSI();
    NumericEvalContext ctx = new NumericEvalContext(mode, true);
    String argJson = translate.expr(arg);
    Expression count = count(partial("count", argJson, "count(" + Scala.label(arg) + ")",
        LongType$.MODULE$, true, "sum", null));
    Expression empty = new EqualTo(count, Literal.create(0L, LongType$.MODULE$));
    if (r instanceof DecimalType rd && a.sumDataType() instanceof DecimalType sd) {
      int k = partial("sum", argJson, "sum(" + Scala.label(arg) + ")", sd, ansi, "sum", ctx);
      // Spark's own Average.evaluateExpression, over the merged sum and count
      Expression div = new DecimalDivideWithOverflowCheck(castTo(merged(k), sd, mode),
          new Cast(count, new DecimalType(20, 0), Option.empty(), mode), rd, null, !ansi);
      return overflowToNull(k, ansi, new If(empty, Literal.create(null, rd), div), rd);
    }
    if (r instanceof DoubleType && Translate.numeric(arg.dataType())
        && !(arg.dataType() instanceof DecimalType)) {
      int k = partial("sum", asDouble(arg), "sum(" + Scala.label(arg) + ")",
          DoubleType$.MODULE$, ansi, "sum", ctx);
      Expression div = new Divide(merged(k), new Cast(count, DoubleType$.MODULE$, Option.empty(),
          EvalMode.LEGACY()), new NumericEvalContext(EvalMode.LEGACY(), true));
      return new If(empty, Literal.create(null, DoubleType$.MODULE$), div);
    }
    throw new Bail("avg of " + arg.dataType().sql());
  }

  private String asDouble(Expression arg) throws Bail {
    String json = translate.expr(arg);
    if (arg.dataType() instanceof DoubleType) {
      return json;
    }
    return Json.obj("op", Json.str("cast"), "args", Json.list(List.of(json)),
        "type", Json.str("DOUBLE"), "ansi", "true");
  }

  private Expression count(int k) {
    return new Coalesce(Scala.seq(List.of(merged(k), Literal.create(0L, LongType$.MODULE$))));
  }

  private static Expression castTo(Expression e, DataType t, Enumeration.Value mode) {
    return e.dataType().equals(t) ? e : new Cast(e, t, Option.empty(), mode);
  }

  /** Legacy mode: a partial that overflowed its buffer makes the whole result NULL. */
  private Expression overflowToNull(int k, boolean ansi, Expression e, DataType t) {
    if (ansi) {
      return e;
    }
    String key = "ovf|" + k;
    Integer o = partialIndex.get(key);
    if (o == null) {
      o = register(key, Json.obj("fn", Json.str("ovf"), "of", Integer.toString(k)),
          "overflow(" + partials.get(k).field().name() + ")", BooleanType$.MODULE$, "max", null);
    }
    return new If(merged(o), Literal.create(null, t), e);
  }

  private int partial(String fn, String argJson, String label, DataType type, boolean ansi,
      String merge, NumericEvalContext ctx) throws Bail {
    String json = argJson == null
        ? Json.obj("fn", Json.str(fn), "type", Json.str(Translate.typeName(type)))
        : Json.obj("fn", Json.str(fn), "arg", argJson, "type",
            Json.str(Translate.typeName(type)), "ansi", Boolean.toString(ansi));
    Integer k = partialIndex.get(json);
    return k != null ? k : register(json, json, label, type, merge, ctx);
  }

  private int register(String key, String json, String label, DataType type, String merge,
      NumericEvalContext ctx) {
    NumericEvalContext c = ctx != null ? ctx : new NumericEvalContext(EvalMode.ANSI(), true);
    AttributeReference placeholder = new AttributeReference("p", type, true, Metadata.empty(),
        org.apache.spark.sql.catalyst.expressions.NamedExpression$.MODULE$.newExprId(),
        Scala.seq(List.of()));
    DataType mergedType = switch (merge) {
      case "min", "max" -> type;
      default -> new Sum(placeholder, c).dataType();
    };
    String name = unique(label);
    AttributeReference merged = new AttributeReference(name, mergedType, true, Metadata.empty(),
        org.apache.spark.sql.catalyst.expressions.NamedExpression$.MODULE$.newExprId(),
        Scala.seq(List.of()));
    partials.add(new Partial(json, new StructField(name, type, true, Metadata.empty()), merge, c,
        merged));
    partialIndex.put(key, partials.size() - 1);
    return partials.size() - 1;
  }

  private Expression merged(int k) {
    return partials.get(k).merged();
  }
}
