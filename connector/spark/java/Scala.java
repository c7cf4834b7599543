package io.bpfstore.spark;

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import org.apache.spark.sql.execution.datasources.v2.python.PythonDataSourceV2;
import org.apache.spark.sql.execution.datasources.v2.python.PythonTable;
import org.apache.spark.sql.types.StructType;
import scala.jdk.javaapi.CollectionConverters;

/** Small bridges to Scala collections and to the Python data source's relation. */
final class Scala {
  static final String NAME = "bpfstore";
  static final String AGG = "bpfstore.agg";
  static final String FILTER = "bpfstore.filter";
  static final String PRUNED = "bpfstore.pruned";
  static final String SELECTIVE = "bpfstore.selective"; // its pushed filter is selective

  private Scala() {}

  static <T> List<T> list(scala.collection.Iterable<T> items) {
    return new ArrayList<>(CollectionConverters.asJavaCollection(items));
  }

  static <T> scala.collection.immutable.Seq<T> seq(List<T> items) {
    return CollectionConverters.asScala(items).toList();
  }

  /** Short text of an expression for partial column names (what explain() shows). */
  static String label(org.apache.spark.sql.catalyst.expressions.Expression e) {
    String s = e.toString().replaceAll("#\\d+L?", "");
    return s.startsWith("(") && s.endsWith(")") ? s.substring(1, s.length() - 1) : s;
  }

  /** The bpfstore relation `p` is, or null. */
  static DataSourceV2Relation bpfstore(LogicalPlan p) {
    if (p instanceof DataSourceV2Relation r && r.table() instanceof PythonTable t
        && NAME.equals(t.name())) {
      return r;
    }
    return null;
  }

  /** A relation the rule wrote itself (already pushed down): never rewritten again. */
  static boolean rewritten(DataSourceV2Relation r) {
    return r.options().containsKey(AGG) || r.options().containsKey(PRUNED);
  }

  /**
   * Spark 4.1-4.3 caches the planned Python reader, with the filters it accepted, in the data
   * source object shared by every query over the same DataFrame; a later query with nothing to
   * push reuses it and silently applies the old filters. Drop that cache before each query.
   */
  static void resetReadInfo(DataSourceV2Relation r) {
    try {
      Field f = PythonTable.class.getDeclaredField("ds");
      f.setAccessible(true);
      ((PythonDataSourceV2) f.get(r.table())).setReadInfo(null);
    } catch (ReflectiveOperationException | RuntimeException e) {
      throw new IllegalStateException("bpfstore: cannot reset the cached Python reader on this "
          + "Spark version (supported: 4.1-4.3); refusing to risk stale filters", e);
    }
  }

  /** A new bpfstore relation over the same dataset with `schema` and extra options. */
  static DataSourceV2Relation load(SparkSession session, DataSourceV2Relation like,
      StructType schema, Map<String, String> extra) {
    Map<String, String> options = new HashMap<>(like.options().asCaseSensitiveMap());
    options.putAll(extra);
    // The Python reader implements pushFilters only when told that Spark will call it.
    options.put("pushFilters", org.apache.spark.sql.internal.SQLConf.get()
        .getConfString("spark.sql.python.filterPushdown.enabled", "false"));
    Dataset<Row> df = session.read().format(NAME).schema(schema).options(options).load();
    LogicalPlan plan = ((org.apache.spark.sql.classic.Dataset<Row>) df).logicalPlan();
    DataSourceV2Relation r = bpfstore(plan);
    if (r == null) {
      throw new IllegalStateException("bpfstore: unexpected plan " + plan.nodeName());
    }
    return r;
  }
}
