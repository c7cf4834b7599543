package io.bpfstore.spark;

import java.util.List;

/** The few JSON shapes the rule writes (objects of strings, booleans, nested JSON, lists). */
final class Json {
  private Json() {}

  static String str(String s) {
    if (s == null) {
      return "null";
    }
    StringBuilder b = new StringBuilder("\"");
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        default -> {
          if (c < 0x20) {
            b.append(String.format("\\u%04x", (int) c));
          } else {
            b.append(c);
          }
        }
      }
    }
    return b.append('"').toString();
  }

  static String list(List<String> jsonItems) {
    return "[" + String.join(",", jsonItems) + "]";
  }

  /** {"k1": v1, ...} from alternating keys and already-encoded JSON values. */
  static String obj(String... keysAndJson) {
    StringBuilder b = new StringBuilder("{");
    for (int i = 0; i < keysAndJson.length; i += 2) {
      if (i > 0) {
        b.append(',');
      }
      b.append(str(keysAndJson[i])).append(':').append(keysAndJson[i + 1]);
    }
    return b.append('}').toString();
  }
}
