// A small client for CrateDB's HTTP endpoint (POST /_sql), over keep-alive connections.
//
// Every failure becomes a CrateRequestError (a TargetError) whose code errors.ts classifies:
// CrateDB's own error code (4000 a value or syntax, 4041/4043 unknown table/column, 5xxx server
// trouble), HTTP status × 10 for a 5xx without a CrateDB body (503 → 5030), or Node's errno for
// the network (ECONNRESET, ETIMEDOUT for our own deadline …). Error messages never carry the
// password (it only ever goes into the Authorization header) and, for bulk requests, never a
// CrateDB message that may quote a row's value: that text is kept apart in `crateMessage`, for
// the dead-letter table only.
import http from 'node:http';
import https from 'node:https';
import { LosslessNumber, isSafeNumber, parse as losslessParse } from 'lossless-json';
import type { JsonValue } from '../../core/change.js';
import { TargetError } from '../../core/errors.js';
import { toJson } from './json-text.js';

export interface CrateConnection {
  /** http(s)://host:port, without credentials */
  url: string;
  username: string;
  password?: string;
  /** deadline of one request, from sending to the last byte of the answer */
  timeoutMs: number;
}

export class CrateRequestError extends TargetError {
  override name = 'CrateRequestError';
  constructor(
    message: string,
    code: string | undefined,
    /** HTTP status, when CrateDB answered */
    readonly status: number | undefined,
    /** CrateDB's own message; may quote a row's value, so it goes to dead letters, never to logs */
    readonly crateMessage: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, code, options);
  }
}

/** The request failed on a kept-alive connection before any answer: worth one more send. */
class StaleSocketError extends CrateRequestError {}

export interface SqlResult {
  cols: string[];
  rows: JsonValue[][];
  rowcount: number;
}

export interface BulkRowResult {
  rowcount: number;
  error?: { code: number | undefined; message: string };
}

// A run of 16+ digits may be a number a double cannot hold; only then parse losslessly.
const MAYBE_UNSAFE_NUMBER = /\d[\d.]{15,}/;
const parseNumber = (text: string) => (isSafeNumber(text) ? Number(text) : new LosslessNumber(text));

/** Parses a CrateDB answer without rounding any number (big integers inside objects come back as numbers). */
export function parseAnswer(text: string): unknown {
  return MAYBE_UNSAFE_NUMBER.test(text) ? losslessParse(text, null, parseNumber) : JSON.parse(text);
}

/** The exception class CrateDB names at the start of its messages ("SQLParseException[…]"). */
export function crateExceptionName(message: string | undefined): string | undefined {
  return message ? /^([A-Za-z]+(?:Exception|Error))\b/.exec(message)?.[1] : undefined;
}

/** Codes whose messages name tables and columns only, safe to log even for bulk requests. */
const MESSAGE_SAFE_CODES = new Set(['4041', '4043', '4045', '4046', '4010', '4011']);

export class CrateClient {
  readonly #base: string;
  readonly #endpoint: URL;
  readonly #auth: string;
  readonly #timeoutMs: number;
  readonly #agent: http.Agent;
  readonly #transport: typeof http | typeof https;

  constructor(conn: CrateConnection, opts: { maxSockets?: number } = {}) {
    this.#base = conn.url.replace(/\/+$/, '');
    this.#endpoint = new URL(`${this.#base}/_sql`);
    if (this.#endpoint.username || this.#endpoint.password) throw new TypeError('the CrateDB URL must not carry credentials; pass username and password');
    this.#auth = `Basic ${Buffer.from(`${conn.username}:${conn.password ?? ''}`, 'utf8').toString('base64')}`;
    this.#timeoutMs = conn.timeoutMs;
    this.#transport = this.#endpoint.protocol === 'https:' ? https : http;
    const AgentClass = this.#endpoint.protocol === 'https:' ? https.Agent : http.Agent;
    this.#agent = new AgentClass({ keepAlive: true, maxSockets: opts.maxSockets ?? 8 });
  }

  /** Runs one statement (our own SQL, or a test's) and returns its rows, numbers exact. */
  async sql(stmt: string, args: readonly JsonValue[] = []): Promise<SqlResult> {
    const body = `{"stmt":${JSON.stringify(stmt)},"args":${toJson(args as JsonValue[])}}`;
    const answer = (await this.#post(body, false)) as { cols?: string[]; rows?: JsonValue[][]; rowcount?: number };
    return { cols: answer.cols ?? [], rows: answer.rows ?? [], rowcount: Number(answer.rowcount ?? -1) };
  }

  /**
   * Runs one statement for many parameter rows, each given as its JSON array text, and returns
   * CrateDB's answer for each row in order.
   */
  async bulk(stmt: string, argRows: readonly string[]): Promise<BulkRowResult[]> {
    const body = `{"stmt":${JSON.stringify(stmt)},"bulk_args":[${argRows.join(',')}]}`;
    const answer = (await this.#post(body, true)) as { results?: Array<{ rowcount?: unknown; error?: { code?: unknown; message?: unknown } }> };
    if (!Array.isArray(answer.results)) throw new CrateRequestError('CrateDB answered a bulk request without results', undefined, 200, undefined);
    return answer.results.map((r) => {
      const out: BulkRowResult = { rowcount: Number(r.rowcount) };
      if (r.error) {
        const code = Number(r.error.code);
        out.error = { code: Number.isFinite(code) ? code : undefined, message: String(r.error.message ?? 'no message') };
      }
      return out;
    });
  }

  /** The server's version number (GET /), e.g. "6.4.3". */
  async version(): Promise<string> {
    const { status, text } = await this.#send('GET', undefined);
    if (status !== 200) throw this.#httpError(status, text, false);
    const answer = parseAnswer(text) as { version?: { number?: string } };
    return String(answer.version?.number ?? '0.0.0');
  }

  close(): void {
    this.#agent.destroy();
  }

  /** The byte size of a bulk request's envelope, without its parameter rows. */
  static envelopeBytes(stmt: string): number {
    return Buffer.byteLength(`{"stmt":${JSON.stringify(stmt)},"bulk_args":[]}`);
  }

  async #post(body: string, carriesRows: boolean): Promise<unknown> {
    const { status, text } = await this.#send('POST', body);
    if (status !== 200) throw this.#httpError(status, text, carriesRows);
    try {
      return parseAnswer(text);
    } catch (err) {
      throw new CrateRequestError(`CrateDB answered HTTP 200 with a body that is not JSON (${text.length} characters)`, undefined, status, undefined, { cause: err });
    }
  }

  #httpError(status: number, text: string, carriesRows: boolean): CrateRequestError {
    let code: string | undefined;
    let message: string | undefined;
    try {
      const e = (parseAnswer(text) as { error?: { code?: unknown; message?: unknown } }).error;
      if (e && e.code !== undefined) {
        code = String(e.code);
        message = e.message === undefined ? undefined : String(e.message);
      }
    } catch {
      // not a CrateDB answer (a proxy, a load balancer): classified by its status below
    }
    if (code === undefined) {
      code = status >= 500 ? String(status * 10) : status === 429 ? '4290' : `HTTP${status}`;
      return new CrateRequestError(`CrateDB at ${this.#base} answered HTTP ${status}`, code, status, undefined);
    }
    const shown = !carriesRows || MESSAGE_SAFE_CODES.has(code) ? `: ${truncate(message ?? '', 500)}` : ` (${crateExceptionName(message) ?? 'details in the dead letters'})`;
    return new CrateRequestError(`CrateDB answered HTTP ${status}, code ${code}${shown}`, code, status, message);
  }

  /**
   * A kept-alive connection that the server closed while idle fails the next request before any
   * answer (Node marks it reusedSocket): sent once more on a new connection. Every request of the
   * sink is idempotent, so a second send is safe even if the first one arrived.
   */
  async #send(method: 'GET' | 'POST', body: string | undefined): Promise<{ status: number; text: string }> {
    try {
      return await this.#sendOnce(method, body);
    } catch (err) {
      if (!(err instanceof StaleSocketError)) throw err;
      return this.#sendOnce(method, body, true);
    }
  }

  #sendOnce(method: 'GET' | 'POST', body: string | undefined, retried = false): Promise<{ status: number; text: string }> {
    const url = method === 'GET' ? new URL(`${this.#base}/`) : this.#endpoint;
    return new Promise((resolve, reject) => {
      let settled = false;
      let answered = false;
      const fail = (err: NodeJS.ErrnoException) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const code = typeof err.code === 'string' ? err.code : 'ECONNRESET';
        const message = `cannot talk to CrateDB at ${this.#base}: ${err.message}`;
        const stale = !retried && !answered && req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE');
        reject(stale ? new StaleSocketError(message, code, undefined, undefined, { cause: err }) : new CrateRequestError(message, code, undefined, undefined, { cause: err }));
      };
      const headers: http.OutgoingHttpHeaders = { authorization: this.#auth, accept: 'application/json' };
      if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = Buffer.byteLength(body);
      }
      const req = this.#transport.request(url, { method, headers, agent: this.#agent }, (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('aborted', () => fail(Object.assign(new Error('the connection closed before the answer was complete'), { code: 'ECONNRESET' })));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
      });
      const timer = setTimeout(() => {
        req.destroy(Object.assign(new Error(`no answer within ${this.#timeoutMs} ms`), { code: 'ETIMEDOUT' }));
      }, this.#timeoutMs);
      req.on('error', fail);
      req.end(body);
    });
  }
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}
