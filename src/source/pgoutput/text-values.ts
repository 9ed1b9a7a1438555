// Postgres text output → the JSON text that to_jsonb() gives for the same value (pure, no I/O).
//
// pgoutput sends every column in its type's text output format. The trigger capture stores
// to_json(row)'s text (migrations/000012), the same values in json's spelling; the repairs and
// retries written into the outbox, which reach a pgoutput stream beside its row changes, are
// to_jsonb's text. So the conversion gives to_jsonb's text: keys then coalesce alike. The walsender
// session runs with the trigger's settings (timezone UTC, extra_float_digits 1, datestyle ISO,
// intervalstyle postgres, bytea_output hex), so the text is the trigger's text; what differs is
// only what to_jsonb does to it:
//   - numbers (int2/4/8, float4/8, numeric) become JSON numbers after a round trip through numeric
//     (1e+100 → 100000…, 1.5e-07 → 0.00000015, -0 → 0); NaN and ±Infinity become strings;
//   - booleans become true/false; json is parsed and written as jsonb writes it (keys ordered by
//     length then bytes, the last of duplicate keys kept, numbers through numeric); jsonb is already so;
//   - timestamps get a T between date and time, and timestamptz an offset with minutes (+00:00);
//   - arrays become nested JSON arrays (bounds dropped), each element converted by its type;
//   - everything else (text, date, time, uuid, bytea as \x…, interval, enums, ranges …) is a JSON
//     string of its text. Composite types and types with a cast to json are strings here, while
//     to_jsonb makes objects of them: a documented difference (docs/pgoutput.md).
// The row object lists its columns in jsonb's key order too.

export type ScalarKind = 'bool' | 'number' | 'json' | 'jsonb' | 'timestamp' | 'timestamptz' | 'text';
export type ValueKind = ScalarKind | { array: ScalarKind; delimiter: string };

/** Column text as pgoutput sent it: a string, null (SQL NULL), or undefined (unchanged TOAST, absent). */
export type ColumnText = string | null | undefined;

/** jsonb's key order: shorter keys first (in bytes), then bytewise. */
export function compareJsonbKeys(a: string, b: string): number {
  const la = Buffer.byteLength(a);
  const lb = Buffer.byteLength(b);
  if (la !== lb) return la - lb;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

const NUMBER = /^(-?)(\d+)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;
/** Needs no rewriting: no exponent, no leading zero, not a negative zero. */
const PLAIN = /^(?:-?[1-9]\d*|0)(?:\.\d+)?$|^-0\.\d*[1-9]\d*$/;

/**
 * A JSON number as numeric_in → numeric_out writes it: exponents expanded, the display scale kept
 * (1.50 stays 1.50), no negative zero. null when the text is not a number (NaN, Infinity).
 */
export function numericText(text: string): string | null {
  // The common case first: an integer or plain decimal as numeric_out and int*out write them.
  if (PLAIN.test(text)) return text;
  const m = NUMBER.exec(text);
  if (!m) return null;
  const [, sign, int, frac = '', expText] = m;
  if (expText === undefined) {
    const plain = `${int.replace(/^0+(?=\d)/, '')}${frac === '' ? '' : `.${frac}`}`;
    return /[1-9]/.test(plain) ? `${sign}${plain}` : plain;
  }
  const exp = Number(expText);
  const scale = Math.max(0, frac.length - exp);
  const digits = int + frac;
  // the decimal point sits after `point` digits of `digits`
  const point = int.length + exp;
  let whole: string;
  let fraction: string;
  if (point <= 0) {
    whole = '0';
    fraction = '0'.repeat(-point) + digits;
  } else if (point >= digits.length) {
    whole = digits + '0'.repeat(point - digits.length);
    fraction = '';
  } else {
    whole = digits.slice(0, point);
    fraction = digits.slice(point);
  }
  fraction = fraction.length >= scale ? fraction.slice(0, scale) : fraction + '0'.repeat(scale - fraction.length);
  whole = whole.replace(/^0+(?=\d)/, '');
  const out = scale > 0 ? `${whole}.${fraction}` : whole;
  return /[1-9]/.test(out) ? `${sign}${out}` : out;
}

function numberJson(text: string): string {
  return numericText(text) ?? JSON.stringify(text);
}

const TIMESTAMP = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d(?::\d\d){0,2})?( BC)?$/;

function timestampJson(text: string, withZone: boolean): string {
  const m = TIMESTAMP.exec(text);
  if (!m) return JSON.stringify(text); // infinity, -infinity
  let zone = m[3] ?? '';
  if (withZone && /^[+-]\d\d$/.test(zone)) zone += ':00';
  return JSON.stringify(`${m[1]}T${m[2]}${zone}${m[4] ?? ''}`);
}

/** Re-writes JSON text the way jsonb prints it. */
export function canonicalJson(text: string): string {
  const p = { s: text, i: 0 };
  const out = jsonValue(p);
  skipSpace(p);
  if (p.i !== text.length) throw new SyntaxError(`unexpected text after a JSON value at ${p.i}`);
  return out;
}

interface Cursor {
  s: string;
  i: number;
}

function skipSpace(p: Cursor): void {
  while (p.i < p.s.length) {
    const c = p.s.charCodeAt(p.i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    p.i++;
  }
}

function jsonString(p: Cursor): string {
  const start = p.i;
  p.i++;
  let escaped = false;
  for (; p.i < p.s.length; p.i++) {
    const c = p.s[p.i];
    if (c === '\\') { escaped = true; p.i++; continue; }
    if (c === '"') break;
  }
  if (p.i >= p.s.length) throw new SyntaxError('unterminated JSON string');
  p.i++;
  const token = p.s.slice(start, p.i);
  return escaped ? (JSON.parse(token) as string) : token.slice(1, -1);
}

const LITERAL = /true|false|null|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

function jsonValue(p: Cursor): string {
  skipSpace(p);
  const c = p.s[p.i];
  if (c === '{') {
    p.i++;
    const members = new Map<string, string>();
    skipSpace(p);
    if (p.s[p.i] === '}') { p.i++; return '{}'; }
    for (;;) {
      skipSpace(p);
      if (p.s[p.i] !== '"') throw new SyntaxError(`expected a key at ${p.i}`);
      const key = jsonString(p);
      skipSpace(p);
      if (p.s[p.i++] !== ':') throw new SyntaxError(`expected : at ${p.i - 1}`);
      // the last of duplicate keys wins, as in jsonb
      members.delete(key);
      members.set(key, jsonValue(p));
      skipSpace(p);
      const d = p.s[p.i++];
      if (d === '}') break;
      if (d !== ',') throw new SyntaxError(`expected , or } at ${p.i - 1}`);
    }
    const keys = [...members.keys()].sort(compareJsonbKeys);
    return `{${keys.map((k) => `${JSON.stringify(k)}: ${members.get(k)}`).join(', ')}}`;
  }
  if (c === '[') {
    p.i++;
    const items: string[] = [];
    skipSpace(p);
    if (p.s[p.i] === ']') { p.i++; return '[]'; }
    for (;;) {
      items.push(jsonValue(p));
      skipSpace(p);
      const d = p.s[p.i++];
      if (d === ']') break;
      if (d !== ',') throw new SyntaxError(`expected , or ] at ${p.i - 1}`);
    }
    return `[${items.join(', ')}]`;
  }
  if (c === '"') return JSON.stringify(jsonString(p));
  LITERAL.lastIndex = p.i;
  const m = LITERAL.exec(p.s);
  if (!m) throw new SyntaxError(`unexpected character at ${p.i}`);
  p.i += m[0].length;
  return m[0] === 'true' || m[0] === 'false' || m[0] === 'null' ? m[0] : numberJson(m[0]);
}

function scalarJson(kind: ScalarKind, text: string): string {
  switch (kind) {
    case 'bool':
      return text === 't' ? 'true' : 'false';
    case 'number':
      return numberJson(text);
    case 'json':
      return canonicalJson(text);
    case 'jsonb':
      return text;
    case 'timestamp':
      return timestampJson(text, false);
    case 'timestamptz':
      return timestampJson(text, true);
    case 'text':
      return JSON.stringify(text);
  }
}

/** Parses an array's text output ({…}, nested, optional [l:u]= bounds) into JSON, converting elements. */
export function arrayJson(text: string, kind: ScalarKind, delimiter = ','): string {
  let i = 0;
  if (text[0] === '[') {
    i = text.indexOf('=') + 1;
    if (i === 0) throw new SyntaxError('array bounds without =');
  }
  const element = (): string => {
    if (text[i] === '{') return list();
    if (text[i] === '"') {
      let out = '';
      i++;
      for (;;) {
        const c = text[i++];
        if (c === undefined) throw new SyntaxError('unterminated array element');
        if (c === '\\') { out += text[i++]; continue; }
        if (c === '"') break;
        out += c;
      }
      return scalarJson(kind, out);
    }
    const start = i;
    while (i < text.length && text[i] !== delimiter && text[i] !== '}') i++;
    const raw = text.slice(start, i);
    return raw === 'NULL' ? 'null' : scalarJson(kind, raw);
  };
  const list = (): string => {
    if (text[i] !== '{') throw new SyntaxError(`expected { at ${i}`);
    i++;
    if (text[i] === '}') { i++; return '[]'; }
    const items: string[] = [];
    for (;;) {
      items.push(element());
      const c = text[i++];
      if (c === '}') break;
      if (c !== delimiter) throw new SyntaxError(`expected ${delimiter} or } at ${i - 1}`);
    }
    return `[${items.join(', ')}]`;
  };
  const out = list();
  if (i !== text.length) throw new SyntaxError('unexpected text after an array');
  return out;
}

/** The JSON text of one value; SQL NULL is null. */
export function valueJson(kind: ValueKind, text: string | null): string {
  if (text === null) return 'null';
  return typeof kind === 'string' ? scalarJson(kind, text) : arrayJson(text, kind.array, kind.delimiter);
}

/**
 * The JSON object of a row (what to_jsonb(row)::text gives), from the columns that are present;
 * `order` lists the column indexes in jsonb's key order (see columnOrder).
 */
export function rowJson(names: readonly string[], kinds: readonly ValueKind[], order: readonly number[], values: readonly ColumnText[]): string {
  let labels = LABELS.get(names);
  if (!labels) LABELS.set(names, (labels = names.map((n) => `${JSON.stringify(n)}: `)));
  let out = '{';
  for (const i of order) {
    const v = values[i];
    if (v === undefined) continue;
    out += (out.length > 1 ? ', ' : '') + labels[i] + (v === null ? 'null' : valueJson(kinds[i], v));
  }
  return `${out}}`;
}

/** `"name": ` per column list (a relation plan's names array lives as long as the plan). */
const LABELS = new WeakMap<readonly string[], string[]>();

/** Column indexes in jsonb's key order. */
export function columnOrder(names: readonly string[]): number[] {
  return names.map((_, i) => i).sort((a, b) => compareJsonbKeys(names[a], names[b]));
}
