// The replication connection of one stream: START_REPLICATION on a `replication=database`
// connection, the copy-both framing (XLogData, primary keepalive, standby status update), pgoutput
// decoding by pg-logical-replication's parser, and backpressure.
//
// States: new → streaming (after CopyBothResponse) → stopped (stop()) | failed (the server ended the
// stream or the connection broke; `failure` holds why). Messages are decoded in arrival order
// (a relation message must be decoded before the changes that refer to it) and queued. While the
// queue holds `highWater` items the socket is paused: the server then waits in its send buffer, so
// a transaction of millions of rows is never held here, whatever its size.
//
// Why not the library's LogicalReplicationService: its acknowledge() reports `lsn + 1` as flushed,
// which, given a commit end LSN, can skip a transaction whose commit record starts right there; its
// timer acknowledges the last LSN *received* (before the sink applied it); and it can only pause
// while its own handler runs. Here the owner says exactly which position is applied, and only that
// position is ever reported, also by the timer that keeps the walsender from timing out while paused.
import pg from 'pg';
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { HaltError } from '../../core/errors.js';
import { quoteIdent, quoteLiteral } from '../../core/identifiers.js';
import type { Logger } from '../../core/logger.js';
import { formatLsn } from './lsn.js';

/** Output settings of the walsender session: the same text as the capture trigger's to_jsonb() sees. */
export const WALSENDER_OPTIONS = '-c timezone=UTC -c extra_float_digits=1 -c datestyle=ISO,YMD -c intervalstyle=postgres -c bytea_output=hex';

export interface StreamItem {
  /** the XLogData position of the message */
  lsn: bigint;
  msg: Pgoutput.Message;
}

export interface WalStreamOptions {
  connection: pg.ClientConfig;
  slot: string;
  publication: string;
  /** queued messages at which reading pauses */
  highWater: number;
  statusIntervalMs: number;
  logger: Logger;
  /** the queue went from empty to non-empty */
  onItem: () => void;
  onKeepalive: (walEnd: bigint, replyRequested: boolean) => void;
}

interface PgConnection {
  on(event: 'copyData', fn: (msg: { chunk: Buffer }) => void): void;
  once(event: 'replicationStart', fn: () => void): void;
  sendCopyFromChunk(chunk: Buffer): void;
  stream: { pause(): void; resume(): void };
}

const PG_EPOCH_MS = 946_684_800_000n;

export class WalStream {
  readonly #opts: WalStreamOptions;
  readonly #log: Logger;
  readonly #plugin: PgoutputPlugin;
  #client: pg.Client | null = null;
  #con: PgConnection | null = null;
  #queue: StreamItem[] = [];
  #head = 0;
  #paused = false;
  #stopped = false;
  #timer: NodeJS.Timeout | null = null;
  #acknowledged = 0n;
  /** messages queued since start(), and taken out of the queue */
  #received = 0;
  #taken = 0;
  /** a BEGIN arrived whose COMMIT has not */
  #receivingTxn = false;
  failure: Error | null = null;

  constructor(opts: WalStreamOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [opts.publication], messages: true });
  }

  get length(): number {
    return this.#queue.length - this.#head;
  }

  /** How many messages this stream has queued since it started (a keepalive's place in the stream). */
  get received(): number {
    return this.#received;
  }

  /** How many messages were taken from the queue. */
  get taken(): number {
    return this.#taken;
  }

  /** The last message queued is inside a transaction (a BEGIN without its COMMIT yet). */
  get receivingTxn(): boolean {
    return this.#receivingTxn;
  }

  /** Connects and starts streaming from the position assumed (assume()); resolves once the server streams. */
  async start(): Promise<void> {
    const client = new pg.Client({
      ...this.#opts.connection, replication: 'database', application_name: `pg2crate ${this.#opts.slot}`, options: WALSENDER_OPTIONS, keepAlive: true,
    } as pg.ClientConfig);
    client.on('error', (err) => this.#fail(err));
    client.on('end', () => { if (!this.#stopped) this.#fail(new Error('Connection terminated: the replication connection closed')); });
    this.#client = client;
    await client.connect();
    const con = (client as unknown as { connection: PgConnection }).connection;
    this.#con = con;
    con.on('copyData', ({ chunk }) => this.#onData(chunk));
    const started = new Promise<void>((resolve) => con.once('replicationStart', resolve));
    // From the position assumed (the slot's confirmed one, or later: pgoutput-source.ts #start); the
    // server starts at the slot's confirmed position when it is the later one.
    const sql = `START_REPLICATION SLOT ${quoteIdent(this.#opts.slot)} LOGICAL ${formatLsn(this.#acknowledged)} (proto_version '1', publication_names ${quoteLiteral(quoteIdent(this.#opts.publication))}, messages 'true')`;
    const ended = client.query(sql).then(
      () => { if (!this.#stopped) this.#fail(new Error('Connection terminated: the server ended replication')); },
      (err: Error) => { if (!this.#stopped) this.#fail(err); throw this.failure ?? err; },
    );
    await Promise.race([started, ended.then(() => { throw this.failure ?? new Error('replication ended before it started'); })]);
    ended.catch(() => {});
    this.#timer = setInterval(() => this.#sendStatus(this.#acknowledged, false), this.#opts.statusIntervalMs);
    this.#timer.unref();
  }

  #fail(err: Error): void {
    if (this.failure || this.#stopped) return;
    this.failure = undecodable(err, this.#opts.slot) ?? err;
    this.#log.warn({ err: this.failure }, 'replication stream failed');
    this.#opts.onItem();
  }

  #onData(chunk: Buffer): void {
    if (this.#stopped || this.failure) return;
    const kind = chunk[0];
    if (kind === 0x77) {
      // XLogData: dataStart, walEnd, sendTime, then one pgoutput message
      const lsn = chunk.readBigUInt64BE(1);
      let msg: Pgoutput.Message;
      try {
        msg = this.#plugin.parse(chunk.subarray(25));
      } catch (err) {
        this.#fail(new Error(`cannot decode a pgoutput message at ${formatLsn(lsn)}: ${(err as Error).message}`, { cause: err }));
        return;
      }
      // Values stay in their text form: the library's type parsers would round numbers and dates.
      if (msg.tag === 'relation') for (const c of msg.columns) c.parser = (raw: unknown) => raw;
      // A logical message's content is a view into node-postgres' read buffer, which it reuses for
      // the next socket reads (pg-protocol's mergeBuffer copies a partial message to its start). A
      // message that waits in the queue behind a backlog would then read other bytes: a stop mark
      // read that way was never recognised and a switch waited for it forever. Copy it now.
      if (msg.tag === 'message') msg.content = Buffer.from(msg.content);
      this.#queue.push({ lsn, msg });
      this.#received++;
      if (msg.tag === 'begin') this.#receivingTxn = true;
      else if (msg.tag === 'commit') this.#receivingTxn = false;
      if (this.length === 1) this.#opts.onItem();
      if (this.length >= this.#opts.highWater && !this.#paused) {
        this.#paused = true;
        this.#con?.stream.pause();
      }
    } else if (kind === 0x6b) {
      // primary keepalive: walEnd, sendTime, replyRequested
      this.#opts.onKeepalive(chunk.readBigUInt64BE(1), chunk[17] === 1);
    }
  }

  peek(): StreamItem | undefined {
    return this.#queue[this.#head];
  }

  take(): StreamItem | undefined {
    const item = this.#queue[this.#head];
    if (!item) return undefined;
    this.#queue[this.#head++] = undefined as unknown as StreamItem;
    this.#taken++;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (this.#paused && this.length < this.#opts.highWater / 2) {
      this.#paused = false;
      this.#con?.stream.resume();
    }
    return item;
  }

  /** Reports `lsn` as written, flushed and applied: the slot's confirmed position moves there. */
  acknowledge(lsn: bigint, replyRequested = false): void {
    if (lsn > this.#acknowledged) this.#acknowledged = lsn;
    this.#sendStatus(this.#acknowledged, replyRequested);
  }

  get acknowledged(): bigint {
    return this.#acknowledged;
  }

  /** Sets the position reported by the timer without sending (the slot's position at start). */
  assume(lsn: bigint): void {
    if (lsn > this.#acknowledged) this.#acknowledged = lsn;
  }

  #sendStatus(lsn: bigint, replyRequested: boolean): void {
    if (!this.#con || this.#stopped || this.failure || lsn === 0n) return;
    const buf = Buffer.alloc(34);
    buf[0] = 0x72; // 'r'
    buf.writeBigUInt64BE(lsn, 1);
    buf.writeBigUInt64BE(lsn, 9);
    buf.writeBigUInt64BE(lsn, 17);
    buf.writeBigUInt64BE((BigInt(Date.now()) - PG_EPOCH_MS) * 1000n, 25);
    buf[33] = replyRequested ? 1 : 0;
    this.#con.sendCopyFromChunk(buf);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#queue = [];
    this.#head = 0;
    const client = this.#client;
    this.#client = null;
    // A paused socket never sees the end of the stream: resume it so that end() can finish.
    const con = this.#con;
    this.#con = null;
    con?.stream.resume();
    if (client) {
      const ended = await Promise.race([client.end().then(() => true, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000).unref())]);
      if (!ended) (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    }
  }
}

/**
 * The server cannot decode the slot: its historic catalog snapshot lacks a catalog change (a
 * TRUNCATE, a rewrite) that committed while the slot was being created (a PostgreSQL bug, slot.ts).
 * Every start fails at the same transaction, so this halts with the way out instead of retrying.
 */
function undecodable(err: Error, slot: string): HaltError | null {
  if ((err as { code?: string }).code !== 'XX000' || !/could not map file(node|number) .* to relation OID/.test(err.message)) return null;
  return new HaltError(
    `slot ${slot} cannot be decoded (${err.message}): its catalog snapshot misses a change that committed while the slot was being created ` +
      '(a PostgreSQL bug that switch-capture now works around, docs/pgoutput.md), and every start fails the same way. ' +
      'The changes it holds cannot be read: run `pg2crate slot drop --force`, `pg2crate switch-capture trigger` and `pg2crate backfill`, then `switch-capture pgoutput` again',
    { cause: err },
  );
}
