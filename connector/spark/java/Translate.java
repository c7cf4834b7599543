package io.bpfstore.spark;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.catalyst.expressions.Add;
import org.apache.spark.sql.catalyst.expressions.Alias;
import org.apache.spark.sql.catalyst.expressions.And;
import org.apache.spark.sql.catalyst.expressions.Attribute;
import org.apache.spark.sql.catalyst.expressions.BinaryComparison;
import org.apache.spark.sql.catalyst.expressions.Cast;
import org.apache.spark.sql.catalyst.expressions.Divide;
import org.apache.spark.sql.catalyst.expressions.EqualNullSafe;
import org.apache.spark.sql.catalyst.expressions.EqualTo;
import org.apache.spark.sql.catalyst.expressions.EvalMode;
import org.apache.spark.sql.catalyst.expressions.ExprId;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.GreaterThan;
import org.apache.spark.sql.catalyst.expressions.GreaterThanOrEqual;
import org.apache.spark.sql.catalyst.expressions.In;
import org.apache.spark.sql.catalyst.expressions.InSet;
import org.apache.spark.sql.catalyst.expressions.IsNotNull;
import org.apache.spark.sql.catalyst.expressions.IsNull;
import org.apache.spark.sql.catalyst.expressions.LessThan;
import org.apache.spark.sql.catalyst.expressions.LessThanOrEqual;
import org.apache.spark.sql.catalyst.expressions.Literal;
import org.apache.spark.sql.catalyst.expressions.Multiply;
import org.apache.spark.sql.catalyst.expressions.Not;
import org.apache.spark.sql.catalyst.expressions.Or;
import org.apache.spark.sql.catalyst.expressions.Subtract;
import org.apache.spark.sql.catalyst.expressions.UnaryMinus;
import org.apache.spark.sql.types.BooleanType;
import org.apache.spark.sql.types.ByteType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DateType;
import org.apache.spark.sql.types.Decimal;
import org.apache.spark.sql.types.DecimalType;
import org.apache.spark.sql.types.DoubleType;
import org.apache.spark.sql.types.FloatType;
import org.apache.spark.sql.types.IntegerType;
import org.apache.spark.sql.types.LongType;
import org.apache.spark.sql.types.ShortType;
import org.apache.spark.sql.types.StringType;
import scala.Enumeration;

/**
 * Catalyst expressions -> the typed JSON expression of connector/spark/spec.py. Every arithmetic
 * and cast node carries Spark's own result type and ANSI flag; whatever the agent could not
 * reproduce exactly (a rounding decimal product, legacy integer wrap-around, decimal division,
 * string functions, ...) throws {@link Bail}, and the caller leaves the plan alone.
 */
final class Translate {
  /** Larger IN sets (Spark's InSet, the join keys of JoinPushdown) travel as key sets. */
  static final int IN_LIST_MAX = 16;

  private final Map<ExprId, String> columns; // relation attributes -> column names
  private final Map<ExprId, Expression> aliases; // Project aliases between here and the relation

  Translate(Map<ExprId, String> columns, Map<ExprId, Expression> aliases) {
    this.columns = columns;
    this.aliases = aliases;
  }

  /** The expression with Project aliases replaced by what they stand for. */
  Expression resolve(Expression e) {
    if (e instanceof Attribute a && !columns.containsKey(a.exprId())
        && aliases.containsKey(a.exprId())) {
      return resolve(aliases.get(a.exprId()));
    }
    if (e instanceof Alias al) {
      return resolve(al.child());
    }
    return e;
  }

  /** The relation column an expression is, or null. */
  String column(Expression e) {
    Expression r = resolve(e);
    return r instanceof Attribute a ? columns.get(a.exprId()) : null;
  }

  static String typeName(DataType t) throws Bail {
    if (t instanceof BooleanType || t instanceof ByteType || t instanceof ShortType
        || t instanceof IntegerType || t instanceof LongType || t instanceof FloatType
        || t instanceof DoubleType || t instanceof DecimalType || t instanceof DateType) {
      return t.sql();
    }
    if (t instanceof StringType && t.sql().equals("STRING")) { // UTF8_BINARY collation only
      return "STRING";
    }
    throw new Bail("type " + t.sql());
  }

  static boolean integral(DataType t) {
    return t instanceof ByteType || t instanceof ShortType || t instanceof IntegerType
        || t instanceof LongType;
  }

  static boolean numeric(DataType t) {
    return integral(t) || t instanceof FloatType || t instanceof DoubleType
        || t instanceof DecimalType;
  }

  String expr(Expression e) throws Bail {
    if (e instanceof Alias al) {
      return expr(al.child());
    }
    if (e instanceof Attribute a) {
      String name = columns.get(a.exprId());
      if (name != null) {
        typeName(a.dataType());
        return Json.obj("col", Json.str(name));
      }
      if (aliases.containsKey(a.exprId())) {
        return expr(aliases.get(a.exprId()));
      }
      throw new Bail("attribute " + a.sql());
    }
    if (e instanceof Literal l) {
      return literal(l.value(), l.dataType());
    }
    if (e instanceof And x) {
      return op("and", expr(x.left()), expr(x.right()));
    }
    if (e instanceof Or x) {
      return op("or", expr(x.left()), expr(x.right()));
    }
    if (e instanceof Not x) {
      return op("not", expr(x.child()));
    }
    if (e instanceof IsNull x) {
      return op("isnull", expr(x.child()));
    }
    if (e instanceof IsNotNull x) {
      return op("not", op("isnull", expr(x.child())));
    }
    if (e instanceof EqualNullSafe x) {
      return nullSafeEqual(x.left(), x.right());
    }
    if (e instanceof BinaryComparison c) {
      return compare(c);
    }
    if (e instanceof In x) {
      List<String> args = new ArrayList<>();
      args.add(expr(x.value()));
      for (Expression v : Scala.list(x.list())) {
        if (!(v instanceof Literal lit)) {
          throw new Bail("IN with a non-literal");
        }
        args.add(literal(lit.value(), x.value().dataType()));
      }
      return op("in", args.toArray(new String[0]));
    }
    if (e instanceof InSet x) {
      DataType t = x.child().dataType();
      List<Object> values = Scala.list(x.hset().toList());
      // a key set: one typed array, not a literal per value (floats stay an IN list, as
      // before: Spark's InSet rules for -0.0 and NaN were not checked against a key set's)
      if (values.size() > IN_LIST_MAX && !(t instanceof DoubleType || t instanceof FloatType)) {
        List<String> keys = new ArrayList<>();
        for (Object v : values) {
          keys.add(v == null ? "null" : Json.str(text(v, t)));
        }
        return Json.obj("op", Json.str("in_keys"), "args", Json.list(List.of(expr(x.child()))),
            "type", Json.str(typeName(t)), "keys", Json.list(keys));
      }
      List<String> args = new ArrayList<>();
      args.add(expr(x.child()));
      for (Object v : values) {
        args.add(literal(v, t));
      }
      return op("in", args.toArray(new String[0]));
    }
    if (e instanceof Cast c) {
      return cast(c);
    }
    if (e instanceof Add x) {
      return arith("+", x, x.left(), x.right(), x.evalContext().evalMode());
    }
    if (e instanceof Subtract x) {
      return arith("-", x, x.left(), x.right(), x.evalContext().evalMode());
    }
    if (e instanceof Multiply x) {
      return arith("*", x, x.left(), x.right(), x.evalContext().evalMode());
    }
    if (e instanceof Divide x) {
      if (!(x.dataType() instanceof DoubleType)) { // decimal division rounds by its own rules
        throw new Bail("decimal division");
      }
      return arith("/", x, x.left(), x.right(), x.evalContext().evalMode());
    }
    if (e instanceof UnaryMinus x) {
      if (integral(x.dataType()) && !x.failOnError()) {
        throw new Bail("legacy integer negation wraps around");
      }
      return typed("neg", x.dataType(), x.failOnError(), expr(x.child()));
    }
    throw new Bail(e.getClass().getSimpleName() + " " + e.sql());
  }

  private String compare(BinaryComparison c) throws Bail {
    String op;
    if (c instanceof EqualTo) {
      op = "=";
    } else if (c instanceof LessThan) {
      op = "<";
    } else if (c instanceof LessThanOrEqual) {
      op = "<=";
    } else if (c instanceof GreaterThan) {
      op = ">";
    } else if (c instanceof GreaterThanOrEqual) {
      op = ">=";
    } else {
      throw new Bail(c.getClass().getSimpleName());
    }
    if (!c.left().dataType().sameType(c.right().dataType())) {
      throw new Bail("comparison of different types");
    }
    typeName(c.left().dataType());
    return op(op, expr(c.left()), expr(c.right()));
  }

  /** a <=> b is never NULL: both NULL, or both not NULL and equal. */
  private String nullSafeEqual(Expression l, Expression r) throws Bail {
    if (!l.dataType().sameType(r.dataType())) {
      throw new Bail("comparison of different types");
    }
    typeName(l.dataType());
    String a = expr(l);
    String b = expr(r);
    String bothNull = op("and", op("isnull", a), op("isnull", b));
    String equal = op("and", op("not", op("isnull", a)), op("not", op("isnull", b)),
        op("=", a, b));
    return op("or", bothNull, equal);
  }

  private String cast(Cast c) throws Bail {
    DataType from = c.child().dataType();
    DataType to = c.dataType();
    Enumeration.Value mode = c.evalMode();
    if (from.sameType(to)) {
      return expr(c.child());
    }
    if (mode == EvalMode.TRY() || !numeric(from) || !numeric(to)) {
      throw new Bail("cast " + from.sql() + " -> " + to.sql());
    }
    boolean toFloat = to instanceof DoubleType || to instanceof FloatType;
    if ((from instanceof DoubleType || from instanceof FloatType) && !(to instanceof DoubleType)) {
      throw new Bail("cast from floating point to " + to.sql());
    }
    if (from instanceof DecimalType && integral(to)) {
      throw new Bail("cast decimal -> integer truncates");
    }
    if (integral(from) && integral(to) && to.defaultSize() < from.defaultSize()) {
      throw new Bail("narrowing integer cast");
    }
    if (to instanceof FloatType) {
      throw new Bail("cast to float");
    }
    return typed("cast", to, mode == EvalMode.ANSI() || toFloat, expr(c.child()));
  }

  private String arith(String op, Expression node, Expression l, Expression r,
      Enumeration.Value mode) throws Bail {
    DataType t = node.dataType();
    if (mode == EvalMode.TRY()) {
      throw new Bail("try_ arithmetic");
    }
    if (!l.dataType().sameType(r.dataType()) && !(t instanceof DecimalType)) {
      throw new Bail("arithmetic on different types");
    }
    if (t instanceof DecimalType d) {
      if (!(l.dataType() instanceof DecimalType dl) || !(r.dataType() instanceof DecimalType dr)) {
        throw new Bail("decimal arithmetic on non-decimals");
      }
      // Exact only when Spark does not round: its result scale is the exact scale.
      int exact = op.equals("*") ? dl.scale() + dr.scale() : Math.max(dl.scale(), dr.scale());
      if (d.scale() != exact) {
        throw new Bail("decimal " + op + " -> " + d.sql() + " rounds");
      }
    } else if (integral(t)) {
      if (mode != EvalMode.ANSI()) {
        throw new Bail("legacy integer arithmetic wraps around");
      }
    } else if (!(t instanceof DoubleType)) {
      throw new Bail("arithmetic in " + t.sql());
    }
    return typed(op, t, mode == EvalMode.ANSI(), expr(l), expr(r));
  }

  static String literal(Object v, DataType t) throws Bail {
    String type = Json.str(typeName(t));
    if (v == null) {
      return Json.obj("lit", "null", "type", type);
    }
    return Json.obj("lit", Json.str(text(v, t)), "type", type);
  }

  /** A Catalyst value as spec.py's literal text. */
  private static String text(Object v, DataType t) {
    if (t instanceof DecimalType) {
      return ((Decimal) v).toJavaBigDecimal().toPlainString();
    } else if (t instanceof DoubleType) {
      return Double.toString((Double) v);
    } else if (t instanceof FloatType) {
      return Double.toString(((Float) v).doubleValue()); // the float's exact value
    }
    return v.toString(); // integers, booleans, dates (days since epoch), UTF8String
  }

  private static String op(String name, String... args) {
    return Json.obj("op", Json.str(name), "args", Json.list(List.of(args)));
  }

  private static String typed(String name, DataType t, boolean ansi, String... args)
      throws Bail {
    return Json.obj("op", Json.str(name), "args", Json.list(List.of(args)),
        "type", Json.str(typeName(t)), "ansi", Boolean.toString(ansi));
  }
}
