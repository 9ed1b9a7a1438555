// Reading the top level of a JSON object's text without parsing it (pure).
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
export function isSpace(ch: number): boolean {
  return ch === 32 || ch === 10 || ch === 13 || ch === 9;
}

/** The index just past the string whose opening quote is at `i`, or -1. */
export function stringEnd(text: string, i: number): number {
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
export function valueEnd(text: string, i: number): number {
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
 * Each top-level member of an object's text, in text order: `visit(nameStart, nameEnd, valueStart,
 * valueEnd)` with the name's position inside its quotes. Returns false when the text is not an
 * object of that plain form (or `visit` returned false), true when every member was visited.
 */
export function scanMembers(text: string, visit: (nameStart: number, nameEnd: number, valueStart: number, valueEnd: number) => boolean): boolean {
  const len = text.length;
  let i = 0;
  while (i < len && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== OPEN_OBJECT) return false;
  i++;
  while (i < len && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) === CLOSE_OBJECT) {
    i++;
  } else {
    for (;;) {
      if (text.charCodeAt(i) !== QUOTE) return false;
      const end = stringEnd(text, i);
      if (end < 0) return false;
      const nameStart = i + 1;
      i = end;
      while (isSpace(text.charCodeAt(i))) i++;
      if (text.charCodeAt(i) !== COLON) return false;
      i++;
      while (isSpace(text.charCodeAt(i))) i++;
      const vEnd = valueEnd(text, i);
      if (vEnd < 0) return false;
      if (!visit(nameStart, end - 1, i, vEnd)) return false;
      i = vEnd;
      while (isSpace(text.charCodeAt(i))) i++;
      const sep = text.charCodeAt(i);
      i++;
      if (sep === CLOSE_OBJECT) break;
      if (sep !== COMMA) return false;
      while (isSpace(text.charCodeAt(i))) i++;
    }
  }
  while (i < len && isSpace(text.charCodeAt(i))) i++;
  return i === len;
}
