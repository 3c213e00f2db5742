// Numbers as people read them: 74.7 GB, 2.4 MB/s, 15.5%, 1,234. The mirror of the
// tool's linkband_history/humanize.py (format_value): same units, same decimals, same
// rounding; the browser test runs both on the same values. Change them together.
"use strict";
const lbhFormat = (() => {
  const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB", "PB"];
  const K = 1024;
  const BYTE_FACTOR = { b: 1, byte: 1, bytes: 1, kb: K, kib: K, mb: K ** 2, mib: K ** 2,
    gb: K ** 3, gib: K ** 3, tb: K ** 4, tib: K ** 4 };
  const HUGE = 1e15, MISSING = "–";
  const finite = (v) => typeof v === "number" && isFinite(v);

  // toFixed rounds half away from zero on the exact binary value, as humanize.fixed
  // does; a value that rounds to zero loses its minus sign
  function fixed(v, decimals) {
    const [i, f] = Math.abs(v).toFixed(decimals).split(".");
    const s = i.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (f !== undefined ? "." + f : "");
    return (v < 0 && /[1-9]/.test(s) ? "-" : "") + s;
  }
  function small(v) {
    if (Math.abs(v) < 1e-9) return "0";
    return fixed(v, Math.min(12, 2 - Math.floor(Math.log10(Math.abs(v))))).replace(/\.?0+$/, "");
  }
  function expo(v) {                       // Python's "%.2e": at least two exponent digits
    return v.toExponential(2).replace(/e([+-])(\d)$/, (m, sign, d) => `e${sign}0${d}`);
  }
  function fmtNumber(v) {
    if (v === null || v === undefined) return MISSING;
    if (typeof v === "boolean") return v ? "True" : "False";
    if (!finite(v)) return MISSING;
    const a = Math.abs(v);
    if (a >= HUGE) return expo(v);
    if (v === Math.trunc(v)) return fixed(v, 0);
    if (a < 0.01) return small(v);
    return fixed(v, 2);
  }
  function fmtBytes(n, perSecond) {
    if (!finite(n)) return MISSING;
    let v = n, i = 0;
    while (Math.abs(v) >= 1024 && i < BYTE_UNITS.length - 1) { v /= 1024; i++; }
    let text = fixed(v, i ? 1 : 0);
    if (i < BYTE_UNITS.length - 1 && Math.abs(parseFloat(text.replace(/,/g, ""))) >= 1024) {
      v /= 1024; i++; text = fixed(v, 1);         // 1023.96 KB is shown as 1.0 MB
    }
    return `${text} ${BYTE_UNITS[i]}` + (perSecond ? "/s" : "");
  }
  function fmtValue(v, unit) {
    if (v === null || v === undefined) return MISSING;
    if (typeof v === "boolean") return v ? "True" : "False";
    if (!finite(v)) return MISSING;
    const u = (unit || "").trim(), low = u.toLowerCase();
    const rate = low.endsWith("/s"), base = rate ? low.slice(0, -2) : low;
    if (Object.prototype.hasOwnProperty.call(BYTE_FACTOR, base)) return fmtBytes(v * BYTE_FACTOR[base], rate);
    if (u === "%") return fixed(v, 1) + "%";
    if (low === "ms") return Math.abs(v) >= 1000 ? fixed(v / 1000, 2) + " s" : fixed(v, 2) + " ms";
    if (low === "hz") return fixed(v, 1) + " Hz";
    if (low === "" || low === "count") return fmtNumber(v);
    return `${fmtNumber(v)} ${u}`;
  }
  return { fmtValue, fmtNumber, fmtBytes };
})();
