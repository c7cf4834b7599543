package io.bpfstore.spark;

/** Thrown when a plan cannot be pushed exactly: the rule then leaves that plan as it is. */
final class Bail extends Exception {
  Bail(String why) {
    super(why, null, false, false);
  }
}
