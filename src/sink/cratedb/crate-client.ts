// A small client for CrateDB's HTTP endpoint (POST /_sql), over keep-alive connections, to one
// node or spread over the nodes of a cluster (crate-nodes.ts: round-robin, a node that fails is set
// aside for a back-off and checked before it is used again).
//
// Every failure becomes a CrateRequestError (a TargetError) whose code errors.ts classifies:
// CrateDB's own error code (4000 a value or syntax, 4041/4043 unknown table/column, 5xxx server
// trouble), HTTP status × 10 for a 5xx without a CrateDB body (503 → 5030), or Node's errno for
// the network (ECONNRESET, ETIMEDOUT for our own deadline …). Error messages never carry the
// password (it only ever goes into the Authorization header) and, for bulk requests, never a
// CrateDB message that may quote a row's value: that text is kept apart in `crateMessage`, for
// the dead-letter table only.
//
// A request that a node did not answer is sent to the next node at once when it cannot have
// arrived (connection refused or not made in time) and also when the connection broke before the
// answer (the node died with it, maybe after applying it). That second send is safe because every
// request the sink and verify make is idempotent: bulk upserts and deletes by key converge on the
// same rows however often they run (a delete of a key already gone answers "document missing",
// counted as applied), DDL is CREATE … IF NOT EXISTS or an ADD COLUMN whose failure is checked
// against the columns afterwards, the rest are REFRESH and reads. The drainer relies on the same
// property when it replays a page. A request whose answer did not come in time is not sent again
// here: it may still be running, and a heavy one would time out on each node in turn; the node is
// set aside and the error (retryable) goes to the caller, whose retry lands on another node. When
// no node answers, the error is retryable too: a change is never parked because nodes are down.
import http from 'node:http';
import https from 'node:https';
import { LosslessNumber, isSafeNumber, parse as losslessParse } from 'lossless-json';
import type { JsonValue } from '../../core/change.js';
import { classify, TargetError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { CrateNodes, type CrateNode } from './crate-nodes.js';
import { toJson } from './json-text.js';
import { bulkBody, ParamRows } from './param-rows.js';

export interface CrateConnection {
  /** a node's http(s)://host:port, or the nodes of a cluster (requests are spread over them); without credentials */
  url: string | readonly string[];
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

/**
 * One node did not answer. `unsent`: the request cannot have reached it (no connection, or the
 * node is not in a cluster yet); `lost`: the connection broke before the answer; `late`: no answer
 * within the deadline.
 */
class NodeFailure extends CrateRequestError {
  constructor(message: string, code: string | undefined, readonly phase: 'unsent' | 'lost' | 'late', options?: { cause?: unknown }) {
    super(message, code, undefined, undefined, options);
  }
}

/** The request failed on a kept-alive connection before any answer: worth one more send to the same node. */
class StaleSocketError extends NodeFailure {}

/** How long a node may take to accept a connection, and to answer the check (GET /). */
const CONNECT_TIMEOUT_MS = 5_000;
const CHECK_TIMEOUT_MS = 10_000;

interface NodeEndpoint {
  base: string;
  sql: URL;
  root: URL;
  transport: typeof http | typeof https;
  agent: http.Agent;
}

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

/** every row's answer of a bulk request whose rows all answered row count 1 */
const ONE_ROW: BulkRowResult = Object.freeze({ rowcount: 1 });
const APPLIED_ROW = '{"rowcount":1}';
const BULK_ANSWER_HEAD = /^\{"cols":\[\],"duration":-?[\d.eE+-]+,"results":\[/;

/**
 * Whether a bulk answer says row count 1 for each of `rows` rows and nothing else, in the exact
 * form CrateDB writes it (6.4.3: `{"cols":[],"duration":…,"results":[{"rowcount":1},…]}`). Most
 * answers are that, and reading it so spares parsing thousands of objects; any other text is parsed.
 */
export function allRowsApplied(text: string, rows: number): boolean {
  const head = BULK_ANSWER_HEAD.exec(text);
  if (head === null) return false;
  const step = APPLIED_ROW.length + 1;
  if (text.length !== head[0].length + rows * step + 1) return false;
  for (let r = 0, at = head[0].length; r < rows; r++, at += step) {
    if (!text.startsWith(APPLIED_ROW, at) || text.charCodeAt(at + step - 1) !== (r === rows - 1 ? 93 : 44)) return false;
  }
  return text.charCodeAt(text.length - 1) === 125;
}

/** The exception class CrateDB names at the start of its messages ("SQLParseException[…]"). */
export function crateExceptionName(message: string | undefined): string | undefined {
  return message ? /^([A-Za-z]+(?:Exception|Error))\b/.exec(message)?.[1] : undefined;
}

/** Codes whose messages name tables and columns only, safe to log even for bulk requests. */
const MESSAGE_SAFE_CODES = new Set(['4041', '4043', '4045', '4046', '4010', '4011']);

export class CrateClient {
  readonly #endpoints: NodeEndpoint[];
  readonly #nodes: CrateNodes;
  readonly #auth: string;
  readonly #timeoutMs: number;
  readonly #log: Logger | undefined;

  /** `log`: where a node set aside and a node back are reported */
  constructor(conn: CrateConnection, opts: { maxSockets?: number; now?: () => number; log?: Logger } = {}) {
    const bases = (typeof conn.url === 'string' ? [conn.url] : conn.url).map((u) => u.replace(/\/+$/, ''));
    this.#endpoints = bases.map((base) => {
      const sql = new URL(`${base}/_sql`);
      if (sql.username || sql.password) throw new TypeError('the CrateDB URL must not carry credentials; pass username and password');
      const tls = sql.protocol === 'https:';
      const agent = new (tls ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: opts.maxSockets ?? 8 });
      return { base, sql, root: new URL(`${base}/`), transport: tls ? https : http, agent };
    });
    this.#nodes = new CrateNodes(bases, { now: opts.now });
    this.#auth = `Basic ${Buffer.from(`${conn.username}:${conn.password ?? ''}`, 'utf8').toString('base64')}`;
    this.#timeoutMs = conn.timeoutMs;
    this.#log = opts.log;
  }

  /** Each node and whether it is set aside now (for logs and tests; no credentials in it). */
  nodes(): Array<{ base: string; aside: boolean; failures: number }> {
    return this.#nodes.describe();
  }

  /** Runs one statement (our own SQL, or a test's) and returns its rows, numbers exact. */
  async sql(stmt: string, args: readonly JsonValue[] = []): Promise<SqlResult> {
    const body = `{"stmt":${JSON.stringify(stmt)},"args":${toJson(args as JsonValue[])}}`;
    const answer = (await this.#post(Buffer.from(body, 'utf8'), false)) as { cols?: string[]; rows?: JsonValue[][]; rowcount?: number };
    return { cols: answer.cols ?? [], rows: answer.rows ?? [], rowcount: Number(answer.rowcount ?? -1) };
  }

  /**
   * Runs one statement for many parameter rows, each given as its JSON array text, and returns
   * CrateDB's answer for each row in order.
   */
  bulk(stmt: string, argRows: readonly string[]): Promise<BulkRowResult[]> {
    const rows = new ParamRows();
    return this.sendBulk(bulkBody(stmt, argRows.map((a) => rows.row(a))), argRows.length);
  }

  /** Sends a bulk request's body (param-rows.ts bulkBody) of `rows` rows and returns CrateDB's answer for each row in order. */
  async sendBulk(body: Buffer, rows: number): Promise<BulkRowResult[]> {
    const text = await this.#postText(body, true);
    if (allRowsApplied(text, rows)) return new Array<BulkRowResult>(rows).fill(ONE_ROW);
    const answer = this.#parse(text) as { results?: Array<{ rowcount?: unknown; error?: { code?: unknown; message?: unknown } }> };
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
    const { status, text, base } = await this.#send('GET', undefined);
    if (status !== 200) throw this.#httpError(base, status, text, false);
    const answer = parseAnswer(text) as { version?: { number?: string } };
    return String(answer.version?.number ?? '0.0.0');
  }

  close(): void {
    for (const e of this.#endpoints) e.agent.destroy();
  }

  /** `body` is encoded once: its length is the header, and each send (another node, a stale socket) writes the same bytes. */
  async #post(body: Buffer, carriesRows: boolean): Promise<unknown> {
    return this.#parse(await this.#postText(body, carriesRows));
  }

  /** The text of CrateDB's answer of HTTP 200; any other answer is thrown as its error. */
  async #postText(body: Buffer, carriesRows: boolean): Promise<string> {
    const { status, text, base } = await this.#send('POST', body);
    if (status !== 200) throw this.#httpError(base, status, text, carriesRows);
    return text;
  }

  #parse(text: string): unknown {
    try {
      return parseAnswer(text);
    } catch (err) {
      throw new CrateRequestError(`CrateDB answered HTTP 200 with a body that is not JSON (${text.length} characters)`, undefined, 200, undefined, { cause: err });
    }
  }

  #httpError(base: string, status: number, text: string, carriesRows: boolean): CrateRequestError {
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
      return new CrateRequestError(`CrateDB at ${base} answered HTTP ${status}`, code, status, undefined);
    }
    const shown = !carriesRows || MESSAGE_SAFE_CODES.has(code) ? `: ${truncate(message ?? '', 500)}` : ` (${crateExceptionName(message) ?? 'details in the dead letters'})`;
    return new CrateRequestError(`CrateDB answered HTTP ${status}, code ${code}${shown}`, code, status, message);
  }

  /**
   * Sends one request to the first node that answers, in the order crate-nodes.ts gives; a node is
   * checked first when it must be (see there). Any HTTP answer is the node's: returned as it is.
   * The header of this file says which failures go on to the next node.
   */
  async #send(method: 'GET' | 'POST', body: Buffer | undefined): Promise<{ status: number; text: string; base: string }> {
    const failed: NodeFailure[] = [];
    for (const node of this.#nodes.candidates()) {
      const e = this.#endpoints[node.index];
      try {
        if (this.#nodes.needsCheck(node)) await this.#nodes.check(node, () => this.#check(node, e));
        const answer = await this.#sendToNode(e, method, body, this.#timeoutMs);
        this.#answered(node, e);
        return { ...answer, base: e.base };
      } catch (err) {
        // a certificate the node's TLS does not pass, say: no other node will do better
        if (!(err instanceof NodeFailure) || classify(err) !== 'retryable') throw err;
        const { ms, failures } = this.#nodes.setAside(node);
        // once per outage; the node is asked again after each back-off, quietly
        if (failures === 1) this.#log?.warn({ node: e.base, err, retryInMs: ms, nodes: this.#endpoints.length }, 'cratedb node set aside');
        failed.push(err);
        if (err.phase === 'late') break;
      }
    }
    if (failed.length === 1) throw failed[0];
    const last = failed[failed.length - 1];
    throw new CrateRequestError(`no CrateDB node answered: ${failed.map((f) => `${f.message.replace(/^cannot talk to CrateDB at /, '')}`).join('; ')}`, last.code, undefined, undefined, { cause: last });
  }

  /** GET /: a node that is up but not in a cluster yet answers 503 with "ok": false (CrateDB 6.4.3). */
  async #check(node: CrateNode, e: NodeEndpoint): Promise<void> {
    const { status, text } = await this.#sendToNode(e, 'GET', undefined, Math.min(this.#timeoutMs, CHECK_TIMEOUT_MS));
    let ok: unknown;
    try {
      ok = (parseAnswer(text) as { ok?: unknown } | null)?.ok;
    } catch {
      // not CrateDB's answer (a proxy): only its status counts
    }
    if (status === 503 || ok === false) {
      throw new NodeFailure(`cannot talk to CrateDB at ${e.base}: the node is not in a cluster yet (GET / answered HTTP ${status})`, '5030', 'unsent');
    }
    this.#answered(node, e);
  }

  #answered(node: CrateNode, e: NodeEndpoint): void {
    if (this.#nodes.answered(node)) this.#log?.info({ node: e.base }, 'cratedb node back');
  }

  /**
   * A kept-alive connection that the server closed while idle fails the next request before any
   * answer (Node marks it reusedSocket): sent once more to the same node on a new connection.
   */
  async #sendToNode(e: NodeEndpoint, method: 'GET' | 'POST', body: Buffer | undefined, timeoutMs: number): Promise<{ status: number; text: string }> {
    try {
      return await this.#sendOnce(e, method, body, timeoutMs, false);
    } catch (err) {
      if (!(err instanceof StaleSocketError)) throw err;
      return this.#sendOnce(e, method, body, timeoutMs, true);
    }
  }

  #sendOnce(e: NodeEndpoint, method: 'GET' | 'POST', body: Buffer | undefined, timeoutMs: number, retried: boolean): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let connected = false;
      let answered = false;
      let late = false;
      let connectTimer: NodeJS.Timeout | undefined;
      const fail = (err: NodeJS.ErrnoException) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(connectTimer);
        const code = typeof err.code === 'string' ? err.code : 'ECONNRESET';
        const message = `cannot talk to CrateDB at ${e.base}: ${err.message}`;
        const phase = late ? 'late' : connected ? 'lost' : 'unsent';
        const stale = !retried && !answered && req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE');
        reject(stale ? new StaleSocketError(message, code, 'lost', { cause: err }) : new NodeFailure(message, code, phase, { cause: err }));
      };
      const headers: http.OutgoingHttpHeaders = { authorization: this.#auth, accept: 'application/json' };
      if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = body.length;
      }
      const req = e.transport.request(method === 'GET' ? e.root : e.sql, { method, headers, agent: e.agent }, (res) => {
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
      // A host that drops packets would hold the request for the whole deadline: a connection not
      // made within CONNECT_TIMEOUT_MS fails as never sent, so the next node gets it at once.
      req.on('socket', (socket) => {
        if (!socket.connecting) {
          connected = true;
          return;
        }
        const connectMs = Math.min(timeoutMs, CONNECT_TIMEOUT_MS);
        connectTimer = setTimeout(() => req.destroy(Object.assign(new Error(`no connection within ${connectMs} ms`), { code: 'ETIMEDOUT' })), connectMs);
        socket.once('connect', () => {
          connected = true;
          clearTimeout(connectTimer);
        });
      });
      const timer = setTimeout(() => {
        late = true;
        req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
      }, timeoutMs);
      req.on('error', fail);
      req.end(body);
    });
  }
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}
