// Reading the top level of a JSON object's text without parsing it (pure).
//
// The row scans live here with the helpers they call for every character: run through tsx, a call
// into another module in that loop cost 45% more time per row (2.9 against 2.0 µs, same code).
//
// Row images travel as JSON text. Parsing each whole image (and parsing it losslessly, since a
// bigint or numeric may not fit a double) costs more CPU than the rest of a drain; most consumers
// need only the members' names or their value texts. These helpers find where each top-level member
// and its value begin and end. They trust the text to be JSON as Postgres writes it (jsonb output:
// valid, no duplicate names); a caller that needs more gets null and parses.

const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const COLON = 58;
const OPEN_OBJECT = 123;
const CLOSE_OBJECT = 125;
const OPEN_ARRAY = 91;
const CLOSE_ARRAY = 93;

/** JSON's four whitespace characters. */
function isSpace(ch: number): boolean {
  return ch === 32 || ch === 10 || ch === 13 || ch === 9;
}

/** The index just past the string whose opening quote is at `i`, or -1. */
function stringEnd(text: string, i: number): number {
  let q = text.indexOf('"', i + 1);
  // A quote after an odd number of backslashes is part of the string.
  while (q > 0 && text.charCodeAt(q - 1) === BACKSLASH) {
    let bs = 1;
    while (text.charCodeAt(q - 1 - bs) === BACKSLASH) bs++;
    if ((bs & 1) === 0) break;
    q = text.indexOf('"', q + 1);
  }
  return q < 0 ? -1 : q + 1;
}

/** The index just past the object or array that opens at `i`, or -1. */
function nestedEnd(text: string, i: number): number {
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === QUOTE) {
      j = stringEnd(text, j);
      if (j < 0) return -1;
      j--;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth++;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      if (--depth === 0) return j + 1;
    }
  }
  return -1;
}

/** The index just past the value that starts at `i`, or -1. */
function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return stringEnd(text, i);
  if (c === OPEN_OBJECT || c === OPEN_ARRAY) return nestedEnd(text, i);
  // a number, true, false or null: up to the next separator
  let j = i;
  while (j < text.length) {
    const d = text.charCodeAt(j);
    if (d === COMMA || d === CLOSE_OBJECT || d === CLOSE_ARRAY || isSpace(d)) break;
    j++;
  }
  return j > i ? j : -1;
}

/**
 * Where each top-level member of an object's text is: `at` receives, per member in text order, the
 * start and end of its name (inside the quotes) and of its value, four numbers each. Returns the
 * number of members, or -1 when the text is not an object of that plain form. (Positions in an
 * array the caller keeps, not a callback: this runs for every row of a drain.)
 */
export function memberPositions(text: string, at: number[]): number {
  const len = text.length;
  let n = 0;
  let i = 0;
  while (i < len && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== OPEN_OBJECT) return -1;
  i++;
  while (i < len && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) === CLOSE_OBJECT) {
    i++;
  } else {
    for (;;) {
      if (text.charCodeAt(i) !== QUOTE) return -1;
      const end = stringEnd(text, i);
      if (end < 0) return -1;
      at[4 * n] = i + 1;
      at[4 * n + 1] = end - 1;
      i = end;
      while (isSpace(text.charCodeAt(i))) i++;
      if (text.charCodeAt(i) !== COLON) return -1;
      i++;
      while (isSpace(text.charCodeAt(i))) i++;
      const vEnd = valueEnd(text, i);
      if (vEnd < 0) return -1;
      at[4 * n + 2] = i;
      at[4 * n + 3] = vEnd;
      n++;
      i = vEnd;
      while (isSpace(text.charCodeAt(i))) i++;
      const sep = text.charCodeAt(i);
      i++;
      if (sep === CLOSE_OBJECT) break;
      if (sep !== COMMA) return -1;
      while (isSpace(text.charCodeAt(i))) i++;
    }
  }
  while (i < len && isSpace(text.charCodeAt(i))) i++;
  return i === len ? n : -1;
}

export interface RowScan {
  key: string;
  /** the top-level member names, in text order; `prev` itself when they are the same */
  columns: readonly string[];
  /** where in `values` (scanRow's) the value positions of these members begin */
  valuesAt?: number;
}

/**
 * Where the values of many rows' members lie in their texts (a page's rows, one array for all):
 * the k-th member of a row whose positions begin at `first` has its value at
 * [at[first + 2k], at[first + 2k + 1]). A sink that reads values from the row text finds them here
 * instead of scanning the text again; the array is outside the JavaScript heap, so nothing copies it.
 */
export class ValuePositions {
  #at: Int32Array;
  #n = 0;

  constructor(capacity = 4096) {
    this.#at = new Int32Array(Math.max(16, capacity));
  }

  get at(): Int32Array {
    return this.#at;
  }

  get length(): number {
    return this.#n;
  }

  push(start: number, end: number): void {
    if (this.#n + 2 > this.#at.length) {
      const next = new Int32Array(this.#at.length * 2);
      next.set(this.#at);
      this.#at = next;
    }
    this.#at[this.#n++] = start;
    this.#at[this.#n++] = end;
  }

  /** Forgets the positions from `n` on (a row whose scan gave up). */
  truncate(n: number): void {
    this.#n = Math.min(this.#n, n);
  }
}

function sameAt(text: string, at: number, name: string): boolean {
  for (let k = 0; k < name.length; k++) if (text.charCodeAt(at + k) !== name.charCodeAt(k)) return false;
  return true;
}

/**
 * Whether `raw` is an integer of 1 to 15 digits (a double holds it exactly); 2 when it is also
 * written as String(Number(raw)) writes it (no leading zero, no -0), 1 when not, 0 when no such integer.
 */
function smallInteger(raw: string): 0 | 1 | 2 {
  const sign = raw.charCodeAt(0) === 45 ? 1 : 0;
  const digits = raw.length - sign;
  if (digits < 1 || digits > 15) return 0;
  for (let i = sign; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 48 || c > 57) return 0;
  }
  return raw.charCodeAt(sign) === 48 && (digits > 1 || sign === 1) ? 1 : 2;
}

/** A key member's value as JSON.stringify renders it inside keyOf()'s array, or null when the scan cannot say. */
function keyPart(raw: string | undefined): string | null {
  if (raw === undefined || raw === 'null') return 'null';
  const c = raw.charCodeAt(0);
  if (c === QUOTE) return JSON.stringify(JSON.parse(raw) as string);
  if (raw === 'true' || raw === 'false') return raw;
  const integer = smallInteger(raw);
  if (integer === 2) return `{"n":"${raw}"}`;
  if (integer === 1) return `{"n":"${String(Number(raw))}"}`;
  return null;
}

/**
 * The key text (as keyOf(parseRow(text), keyColumns)) and the member names of a row image, or null
 * when the text is not of the shape this scan answers for. With `values`, the positions of the
 * members' values are added to it (and `valuesAt` says where they begin); nothing is added for null.
 */
export function scanRow(text: string, keyColumns: readonly string[], prev?: readonly string[], values?: ValuePositions): RowScan | null {
  if (values === undefined) return scanMembers(text, keyColumns, prev, undefined);
  const first = values.length;
  const scan = scanMembers(text, keyColumns, prev, values);
  if (scan === null) values.truncate(first);
  else scan.valuesAt = first;
  return scan;
}

function scanMembers(text: string, keyColumns: readonly string[], prev: readonly string[] | undefined, values: ValuePositions | undefined): RowScan | null {
  const len = text.length;
  let i = 0;
  while (i < len && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== OPEN_OBJECT) return null;
  i++;
  while (i < len && isSpace(text.charCodeAt(i))) i++;
  const single = keyColumns.length === 1 ? keyColumns[0] : null;
  let singleRaw: string | undefined;
  let raws: (string | undefined)[] | null = null;
  /** the names read so far, once they differ from `prev` */
  let names: string[] | null = null;
  let n = 0;
  if (text.charCodeAt(i) === CLOSE_OBJECT) {
    i++;
  } else {
    for (;;) {
      if (text.charCodeAt(i) !== QUOTE) return null;
      const end = stringEnd(text, i);
      if (end < 0) return null;
      // The same name as the previous row's at this place: compared in place, no new string.
      let name: string;
      if (names === null && prev !== undefined && n < prev.length && prev[n].length === end - i - 2 && sameAt(text, i + 1, prev[n])) {
        name = prev[n];
      } else {
        name = text.slice(i + 1, end - 1);
        if (name.includes('\\')) return null;
        names ??= prev === undefined ? [] : prev.slice(0, n);
        names.push(name);
      }
      n++;
      i = end;
      while (isSpace(text.charCodeAt(i))) i++;
      if (text.charCodeAt(i) !== COLON) return null;
      i++;
      while (isSpace(text.charCodeAt(i))) i++;
      const vEnd = valueEnd(text, i);
      if (vEnd < 0) return null;
      values?.push(i, vEnd);
      if (single !== null) {
        if (name === single) {
          if (singleRaw !== undefined) return null;
          singleRaw = text.slice(i, vEnd);
        }
      } else {
        const k = keyColumns.indexOf(name);
        if (k >= 0) {
          raws ??= new Array<string | undefined>(keyColumns.length).fill(undefined);
          if (raws[k] !== undefined) return null;
          raws[k] = text.slice(i, vEnd);
        }
      }
      i = vEnd;
      while (isSpace(text.charCodeAt(i))) i++;
      const sep = text.charCodeAt(i);
      i++;
      if (sep === CLOSE_OBJECT) break;
      if (sep !== COMMA) return null;
      while (isSpace(text.charCodeAt(i))) i++;
    }
  }
  while (i < len && isSpace(text.charCodeAt(i))) i++;
  if (i !== len) return null;
  // A name twice: JSON.parse would keep the last value; leave such text to it. (A list equal to or
  // a prefix of `prev` was checked when `prev` was made.)
  if (names !== null && new Set(names).size !== names.length) return null;
  const columns = names ?? (prev !== undefined && n === prev.length ? prev : (prev ?? []).slice(0, n));
  let key: string;
  if (single !== null) {
    const part = keyPart(singleRaw);
    if (part === null) return null;
    key = `[${part}]`;
  } else {
    key = '[';
    for (let k = 0; k < keyColumns.length; k++) {
      const part = keyPart(raws?.[k]);
      if (part === null) return null;
      key += k === 0 ? part : `,${part}`;
    }
    key += ']';
  }
  return { key, columns };
}
