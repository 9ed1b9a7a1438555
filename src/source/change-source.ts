// What the drainer needs from a capture mode. The trigger outbox implements it; pgoutput will too.
import type { Change, SourceCatalog } from '../core/change.js';

export interface Page {
  changes: Change[];
  /** the stream position to save once the sink confirmed this page */
  position: string;
  /** true when this page ends the current window (the next read starts a new one) */
  windowDone: boolean;
  /**
   * tables whose key the source found changed in the registry while reading this page (a key
   * column renamed and the table captured again): the drainer describes them again
   */
  rekeyed?: number[];
  /** some changes carry `unkeyed`: the drainer parks them */
  unkeyed?: boolean;
}

export interface DeadLetter {
  change: Change;
  code: string | undefined;
  message: string;
  attempts: number;
}

export interface ChangeSource {
  readonly catalog: SourceCatalog;
  /**
   * Connects and takes the stream, waiting as a standby while another instance holds it; with
   * `wait: false` it throws StreamBusyError instead of waiting.
   */
  acquire(signal: AbortSignal, wait?: boolean): Promise<void>;
  /**
   * The next page of at most `limit` changes, in stream order. With `after` (only where
   * `readsAhead` is true), the page that follows `after`, read while `after` is still being applied.
   */
  readPage(limit: number, after?: Page): Promise<Page>;
  /** The source can read the next page before the current one is confirmed. */
  readonly readsAhead?: boolean;
  /** Saves the checkpoint: the page is applied. Only called after the sink confirmed it. */
  confirm(page: Page): Promise<void>;
  /** Parks changes the target refused, so that they are never counted as applied without a trace. */
  park(letters: DeadLetter[]): Promise<void>;
  /**
   * A table's columns were read again (rows arrived with another set of columns). Rows that existed
   * before an `ADD COLUMN … DEFAULT` hold the default without any trigger firing, so the source may
   * schedule a fresh copy of the table (column-watch.ts). Called before the target gets the columns.
   */
  columnsChanged?(tableId: number): Promise<void>;
  /** Tells the capture side whether to send wake-ups (only while idle; they are costly under load). */
  setIdle(idle: boolean): Promise<void>;
  /** Drops the connection (after an error); the next acquire() reconnects. */
  reset(): Promise<void>;
  close(): Promise<void>;
}
