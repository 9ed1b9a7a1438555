// Names the tool derives from its schema name: the NOTIFY channel, trigger names, the lock key.
import { createHash } from 'node:crypto';

function tag(schema: string): string {
  return schema === 'pg2crate' ? '' : `_${createHash('sha256').update(schema).digest('hex').slice(0, 8)}`;
}

/** The channel the capture triggers notify while the drainer is idle. Always a short plain name. */
export function wakeupChannel(schema: string): string {
  return `pg2crate_wakeup${tag(schema)}`;
}

/** Trigger names on a captured table; one per operation (k: an UPDATE's key changes, b: before truncate, g: a partitioned table's guard). */
export function triggerName(schema: string, op: 'i' | 'u' | 'd' | 'k' | 't' | 'b' | 'g'): string {
  return `pg2crate_capture${tag(schema)}_${op}`;
}

export function captureFunctionName(tableId: number): string {
  return `capture_${tableId}`;
}

export function guardFunctionName(tableId: number): string {
  return `capture_${tableId}_guard`;
}

/** The row trigger function that writes the deletes of an UPDATE's key changes (triggers.ts, splitsKeyChanges). */
export function keyFunctionName(tableId: number): string {
  return `capture_${tableId}_key`;
}

/**
 * The two int4 keys of the advisory lock a drainer holds while it is idle, and the capture
 * triggers probe to decide whether to NOTIFY (triggers.ts). The first spells "p2cw"; the second is
 * taken from the schema name, so that two tool schemas in one database do not share it.
 */
export function wakeupLockKeys(schema: string): [number, number] {
  return [0x70326377, createHash('sha256').update(schema).digest().readInt32BE(0)];
}

/** The text whose 64-bit hash keys the advisory lock of a stream. */
export function streamLockText(schema: string, stream: string): string {
  return `pg2crate:${schema}:${stream}`;
}
