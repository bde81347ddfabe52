package org.adpc.core;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.List;
import java.util.Map;

/**
 * Python's text spellings of numbers and values, so messages match the host's word for word.
 *
 * <p>Why not String.format: Java rounds the shortest decimal string half-up ("%.1f" of 0.15 is
 * "0.2"), Python rounds the exact binary value half-even ("0.1"). Stop reasons such as
 * "deadline: 12.0 ms left of 50 ms" are compared with Python's in the golden tests.
 */
public final class Py {
    private Py() {
    }

    /** f"{v:.{digits}f}". */
    public static String fixed(double v, int digits) {
        if (Double.isNaN(v)) {
            return "nan";
        }
        if (Double.isInfinite(v)) {
            return v > 0 ? "inf" : "-inf";
        }
        String s = new BigDecimal(v).setScale(digits, RoundingMode.HALF_EVEN).toPlainString();
        if (v < 0 || (v == 0.0 && 1.0 / v < 0)) {
            if (!s.startsWith("-")) {
                s = "-" + s;
            }
        }
        return s;
    }

    /** f"{v:g}": six significant digits, trailing zeros dropped, exponent outside [-4, 6). */
    public static String g(double v) {
        if (Double.isNaN(v)) {
            return "nan";
        }
        if (Double.isInfinite(v)) {
            return v > 0 ? "inf" : "-inf";
        }
        if (v == 0.0) {
            return 1.0 / v < 0 ? "-0" : "0";
        }
        BigDecimal rounded = new BigDecimal(v).round(new MathContext(6, RoundingMode.HALF_EVEN));
        int exponent = rounded.precision() - rounded.scale() - 1;
        if (exponent < -4 || exponent >= 6) {
            BigDecimal mantissa = rounded.movePointLeft(exponent);
            String m = strip(mantissa.toPlainString());
            String sign = exponent < 0 ? "-" : "+";
            int e = Math.abs(exponent);
            return m + "e" + sign + (e < 10 ? "0" : "") + e;
        }
        return strip(rounded.toPlainString());
    }

    private static String strip(String s) {
        if (s.indexOf('.') < 0) {
            return s;
        }
        int end = s.length();
        while (s.charAt(end - 1) == '0') {
            end--;
        }
        if (s.charAt(end - 1) == '.') {
            end--;
        }
        return s.substring(0, end);
    }

    /** The shortest decimal that reads back as v (Double.toString is not shortest before
     * Java 19, and Android's may differ again). */
    static BigDecimal shortest(double v) {
        BigDecimal exact = new BigDecimal(v);
        for (int digits = 1; digits < 17; digits++) {
            BigDecimal d = exact.round(new MathContext(digits, RoundingMode.HALF_EVEN));
            if (Double.parseDouble(d.toString()) == v) {
                return d;
            }
        }
        return exact.round(new MathContext(17, RoundingMode.HALF_EVEN));
    }

    /** repr() of a float: the shortest digits that read back, Python's exponent style. */
    public static String floatRepr(double v) {
        if (Double.isNaN(v)) {
            return "nan";
        }
        if (Double.isInfinite(v)) {
            return v > 0 ? "inf" : "-inf";
        }
        if (v == 0.0) {
            return 1.0 / v < 0 ? "-0.0" : "0.0";
        }
        BigDecimal d = shortest(v);
        int exponent = d.precision() - d.scale() - 1;
        if (exponent < -4 || exponent >= 16) {
            String m = strip(d.movePointLeft(exponent).toPlainString());
            int a = Math.abs(exponent);
            return m + "e" + (exponent < 0 ? "-" : "+") + (a < 10 ? "0" : "") + a;
        }
        String plain = strip(d.toPlainString());
        return plain.indexOf('.') < 0 ? plain + ".0" : plain;
    }

    /** repr() of a parsed JSON value (strings in single quotes, True/False/None). */
    public static String repr(Object value) {
        if (value == null) {
            return "None";
        }
        if (value instanceof Boolean) {
            return ((Boolean) value) ? "True" : "False";
        }
        if (value instanceof Double) {
            return floatRepr((Double) value);
        }
        if (value instanceof String) {
            String s = (String) value;
            if (s.indexOf('\'') >= 0 && s.indexOf('"') < 0) {
                return "\"" + s + "\"";
            }
            return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'";
        }
        if (value instanceof List) {
            StringBuilder sb = new StringBuilder("[");
            List<?> list = (List<?>) value;
            for (int i = 0; i < list.size(); i++) {
                sb.append(i == 0 ? "" : ", ").append(repr(list.get(i)));
            }
            return sb.append(']').toString();
        }
        if (value instanceof Map) {
            StringBuilder sb = new StringBuilder("{");
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
                sb.append(first ? "" : ", ").append(repr(e.getKey())).append(": ")
                        .append(repr(e.getValue()));
                first = false;
            }
            return sb.append('}').toString();
        }
        return String.valueOf(value);
    }

    /** type(value).__name__ of a parsed JSON value. */
    public static String typeName(Object value) {
        if (value == null) {
            return "NoneType";
        }
        if (value instanceof Boolean) {
            return "bool";
        }
        if (value instanceof Long) {
            return "int";
        }
        if (value instanceof Double) {
            return "float";
        }
        if (value instanceof String) {
            return "str";
        }
        if (value instanceof Map) {
            return "dict";
        }
        return "list";
    }
}
