// The canonical form of rows for targets that verify client-side (DigestForm 'client'), and the
// normalisation helpers a target uses to describe what it can hold. Pure.
//
// A canonical Row is hashed as canonical JSON: object keys sorted by code unit, numbers in their
// exact decimal text without exponent, leading or trailing zeros (1.50 = 1.5, -0 = 0), strings as
// JSON strings. Two sides that normalise equal values to equal Rows produce the same hash whatever
// order or number formatting their drivers used. The Postgres in-database form (md5 over jsonb text)
// is defined in pg-digest-sql.ts and composes range digests the same way (rangeDigestOf).
import { createHash } from 'node:crypto';
import { keyOf, LosslessNumber, type JsonValue, type Row } from '../core/change.js';
import type { ColumnInfo } from '../core/change.js';

/** Exact decimal text of a number: no exponent, no leading/trailing zeros, no "-0". */
export function exactNumberText(v: number | LosslessNumber | string): string {
  const raw = typeof v === 'string' ? v : v instanceof LosslessNumber ? v.value : numberText(v);
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(raw.trim());
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) throw new TypeError(`not a decimal number: ${JSON.stringify(raw)}`);
  const sign = m[1] === '-' ? '-' : '';
  let digits = m[2] + (m[3] ?? '');
  let point = m[2].length + (m[4] ? Number(m[4]) : 0);
  // Normalise to: digits with no leading zeros, point = position of the decimal point in digits.
  const lead = digits.length - digits.replace(/^0+/, '').length;
  digits = digits.slice(lead);
  point -= lead;
  digits = digits.replace(/0+$/, '');
  if (digits === '') return '0';
  let out: string;
  if (point <= 0) out = `0.${'0'.repeat(-point)}${digits}`;
  else if (point >= digits.length) out = digits + '0'.repeat(point - digits.length);
  else out = `${digits.slice(0, point)}.${digits.slice(point)}`;
  return sign + out;
}

function numberText(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`not a finite number: ${n}`);
  return String(n);
}

/** JSON text with sorted object keys and exact number text; the form every client-side hash takes. */
export function canonicalJson(v: JsonValue | undefined): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number' || v instanceof LosslessNumber) return exactNumberText(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(v).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
}

export function md5Hex(text: string): string {
  return createHash('md5').update(text, 'utf8').digest('hex');
}

/** The hash of one canonical Row. */
export function rowHashOf(row: Row): string {
  return md5Hex(canonicalJson(row));
}

/** The digest of a range: md5 over its row hashes concatenated in key order (as the SQL form). */
export function rangeDigestOf(hashes: Iterable<string>): string {
  const d = rangeDigester();
  for (const x of hashes) d.add(x);
  return d.digest();
}

/** rangeDigestOf() fed one hash at a time, for ranges too large to hold. */
export function rangeDigester(): { add(hash: string): void; digest(): string } {
  const h = createHash('md5');
  return { add: (x) => { h.update(x, 'latin1'); }, digest: () => h.digest('hex') };
}

/** The canonical key text of a canonical Row (see KeyRef.text). */
export function keyTextOf(row: Row, keyColumns: readonly string[]): string {
  return keyOf(row, keyColumns);
}

/**
 * Applies a per-column normaliser to the source's columns only (a column absent from the row counts
 * as NULL), the usual shape of a target's normaliseSourceRow.
 */
export function normaliseColumns(row: Row, columns: readonly ColumnInfo[], valueOf: (c: ColumnInfo, v: JsonValue) => JsonValue): Row {
  const out: Row = {};
  for (const c of columns) {
    const v = row[c.name];
    out[c.name] = v === undefined || v === null ? null : valueOf(c, v);
  }
  return out;
}

const DATE_TIME = /^(\d{4,})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?$/;

/**
 * Epoch milliseconds of a date, timestamp or timestamptz as Postgres writes it in JSON (ISO, any
 * offset), sub-millisecond digits cut towards the past (as CrateDB stores them, also before 1970).
 * Null for what has no instant: infinity, -infinity, BC dates and anything else not ISO.
 */
export function epochMillis(text: string): number | null {
  const m = DATE_TIME.exec(text);
  if (!m) return null;
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', off] = m;
  const date = new Date(0);
  date.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
  date.setUTCHours(Number(h), Number(mi), Number(s), Number((frac + '000').slice(0, 3)));
  let ms = date.getTime();
  if (off && off !== 'Z') {
    const sign = off[0] === '-' ? -1 : 1;
    const parts = off.slice(1).replace(/:/g, '');
    const secs = Number(parts.slice(0, 2)) * 3600 + Number(parts.slice(2, 4) || '0') * 60 + Number(parts.slice(4, 6) || '0');
    ms -= sign * secs * 1000;
  }
  return Number.isFinite(ms) ? ms : null;
}

/** Lower-case hex of bytea as Postgres writes it in JSON (`\x…`), or base64 of the same bytes. */
export function byteaAs(text: string, encoding: 'hex' | 'base64'): string {
  const hex = text.startsWith('\\x') ? text.slice(2).toLowerCase() : text.toLowerCase();
  return encoding === 'hex' ? hex : Buffer.from(hex, 'hex').toString('base64');
}
