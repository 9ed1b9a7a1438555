// Parameter rows as the UTF-8 bytes of their JSON text, written once into one growing buffer per
// statement, and bulk request bodies made of them (pure).
//
// Why bytes and not strings: a page's parameter rows live until the page is applied, through
// several young-generation collections, each of which copies every string still alive, and the
// survivors are promoted and fill the old generation until a full collection. Bytes in a buffer
// are outside the JavaScript heap: nothing copies them, and each row is encoded once instead of
// being built as a string, measured, and encoded again into the request.
//
// Each row is followed by a comma in the buffer. Rows written one after another are then one run
// of bytes, so a request of consecutive rows (the usual request: the rows of a statement in key
// order) is its envelope around one copy of that run.

/** Where one parameter row lies: bytes [start, end) of `rows`, a comma at `end`. */
export interface RowBytes {
  rows: ParamRows;
  start: number;
  end: number;
}

/** Segments longer than this are encoded by Buffer.write, faster than a loop for long text. */
const NATIVE_ENCODE_CHARS = 256;
const COMMA = 0x2c;

export class ParamRows {
  #buf: Buffer;
  #at = 0;
  #rowStart = 0;

  constructor(capacity = 64 * 1024) {
    this.#buf = Buffer.allocUnsafe(Math.max(16, capacity));
  }

  /** The bytes written so far are `buffer[0, length)`; the buffer is replaced as it grows. */
  get buffer(): Buffer {
    return this.#buf;
  }

  get length(): number {
    return this.#at;
  }

  /** Starts a row; returns where it starts. */
  begin(): number {
    this.#rowStart = this.#at;
    return this.#at;
  }

  /** Ends the row begun last (writes the comma after it); returns where it ends. */
  close(): number {
    const end = this.#at;
    this.#reserve(1);
    this.#buf[this.#at++] = COMMA;
    return end;
  }

  /** Forgets what was written of the row begun last (a value refused). */
  cancel(): void {
    this.#at = this.#rowStart;
  }

  /** Forgets what was written from `at` on (part of a row, to be written again another way). */
  cancelTo(at: number): void {
    if (at < this.#rowStart || at > this.#at) throw new RangeError(`cannot rewind to ${at}: the row begun last starts at ${this.#rowStart}, ${this.#at} bytes written`);
    this.#at = at;
  }

  /** Appends one ASCII character. */
  byte(code: number): void {
    this.#reserve(1);
    this.#buf[this.#at++] = code;
  }

  /**
   * Appends `s.slice(from, to)` as UTF-8, as Buffer.from(s.slice(from, to)) would encode it: a
   * surrogate pair as one 4-byte character, a lone surrogate as U+FFFD.
   */
  text(s: string, from = 0, to = s.length): void {
    const n = to - from;
    // at most 3 bytes per UTF-16 unit (a pair of units is 4 bytes)
    this.#reserve(n * 3);
    const b = this.#buf;
    if (n > NATIVE_ENCODE_CHARS) {
      this.#at += b.write(from === 0 && to === s.length ? s : s.slice(from, to), this.#at, 'utf8');
      return;
    }
    let at = this.#at;
    for (let i = from; i < to; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) {
        b[at++] = c;
        continue;
      }
      if (c < 0x800) {
        b[at++] = 0xc0 | (c >> 6);
        b[at++] = 0x80 | (c & 0x3f);
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < to ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          b[at++] = 0xf0 | (cp >> 18);
          b[at++] = 0x80 | ((cp >> 12) & 0x3f);
          b[at++] = 0x80 | ((cp >> 6) & 0x3f);
          b[at++] = 0x80 | (cp & 0x3f);
          i++;
          continue;
        }
        c = 0xfffd;
      }
      b[at++] = 0xe0 | (c >> 12);
      b[at++] = 0x80 | ((c >> 6) & 0x3f);
      b[at++] = 0x80 | (c & 0x3f);
    }
    this.#at = at;
  }

  /** Appends a whole row given as JSON text; returns where it lies. */
  row(json: string): RowBytes {
    const start = this.begin();
    this.text(json);
    return { rows: this, start, end: this.close() };
  }

  /** The text of bytes [start, end) (for callers that want a row as a string). */
  toString(start = 0, end = this.#at): string {
    return this.#buf.toString('utf8', start, end);
  }

  #reserve(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#at + n));
    this.#buf.copy(next, 0, 0, this.#at);
    this.#buf = next;
  }
}

/** The head of a bulk request's body, up to its first parameter row. */
function bulkHead(stmt: string): string {
  return `{"stmt":${JSON.stringify(stmt)},"bulk_args":[`;
}

/** The byte size of a bulk request's envelope, without its parameter rows. */
export function envelopeBytes(stmt: string): number {
  return Buffer.byteLength(bulkHead(stmt)) + 2;
}

/** A bulk request's body: the envelope, and the rows in the order given, each run of consecutive rows copied at once. */
export function bulkBody(stmt: string, items: readonly RowBytes[]): Buffer {
  const head = bulkHead(stmt);
  // the rows, the commas between them, and "]}"
  let size = Buffer.byteLength(head) + Math.max(0, items.length - 1) + 2;
  for (const r of items) size += r.end - r.start;
  const body = Buffer.allocUnsafe(size);
  let at = body.write(head, 0, 'utf8');
  for (let i = 0; i < items.length; i++) {
    if (i > 0) body[at++] = COMMA;
    const first = items[i];
    let end = first.end;
    // the comma written after each row joins it to the next one in the buffer
    while (i + 1 < items.length && items[i + 1].rows === first.rows && items[i + 1].start === end + 1) end = items[++i].end;
    at += first.rows.buffer.copy(body, at, first.start, end);
  }
  body[at++] = 0x5d; // ]
  body[at++] = 0x7d; // }
  if (at !== size) throw new Error(`a bulk body of ${size} bytes was written with ${at}`);
  return body;
}
