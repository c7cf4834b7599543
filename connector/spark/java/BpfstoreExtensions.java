package io.bpfstore.spark;

import org.apache.spark.sql.SparkSessionExtensions;
import scala.Function1;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * {@code spark.sql.extensions=io.bpfstore.spark.BpfstoreExtensions}: adds one pre-CBO optimizer
 * rule that pushes aggregates, whole filter trees and column pruning into bpfstore scans, and
 * resets Spark 4.1-4.3's cached Python reader so pushed filters never leak between queries.
 */
public final class BpfstoreExtensions extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {
  @Override
  public BoxedUnit apply(SparkSessionExtensions extensions) {
    Function1<org.apache.spark.sql.SparkSession, org.apache.spark.sql.catalyst.rules.Rule<
        org.apache.spark.sql.catalyst.plans.logical.LogicalPlan>> builder =
        new AbstractFunction1<>() {
          @Override
          public BpfstoreRule apply(org.apache.spark.sql.SparkSession session) {
            return new BpfstoreRule(session);
          }
        };
    extensions.injectPreCBORule(builder);
    return BoxedUnit.UNIT;
  }
}
