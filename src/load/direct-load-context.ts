// What a direct load runs with (direct-load.ts), shared with its fix-up (direct-load-fixup.ts).
import type pg from 'pg';
import type { SourceCatalog } from '../core/change.js';
import type { Logger } from '../core/logger.js';
import type { PgCopyLoader } from '../sink/postgres/copy-load.js';
import type { Sink } from '../sink/sink.js';

export interface DirectLoadDeps {
  sink: Sink;
  /** a Postgres target: chunks of plain tables travel as binary COPY (sink/postgres/copy-load.ts) */
  pgCopy?: PgCopyLoader;
  catalog: SourceCatalog;
  rejectAttempts: number;
  deadLetterPolicy: 'park' | 'halt';
}

export interface DirectLoadContext {
  pool: pg.Pool;
  schema: string;
  stream: string;
  chunkRows: number;
  pollMs: number;
  logger: Logger;
  signal: AbortSignal;
  isLeader: () => boolean;
  deps: DirectLoadDeps;
  /** the table's key types (format_type), for casting key bounds */
  keyTypes: string[];
  rowsEstimate: number | null;
  /** the table's largest key as text values, or null when it is empty */
  upperKeyOf: () => Promise<unknown>;
  /** tells whether a transaction (by xid) is in an applied window */
  applied: (xid: string) => Promise<boolean>;
}
