// Names the tool derives from its schema name: the NOTIFY channel, trigger names, the lock key.
import { createHash } from 'node:crypto';

function tag(schema: string): string {
  return schema === 'pg2crate' ? '' : `_${createHash('sha256').update(schema).digest('hex').slice(0, 8)}`;
}

/** The channel the capture triggers notify while the drainer is idle. Always a short plain name. */
export function wakeupChannel(schema: string): string {
  return `pg2crate_wakeup${tag(schema)}`;
}

/** Trigger names on a captured table; one per operation (b: before truncate, g: a partitioned table's guard). */
export function triggerName(schema: string, op: 'i' | 'u' | 'd' | 't' | 'b' | 'g'): string {
  return `pg2crate_capture${tag(schema)}_${op}`;
}

export function captureFunctionName(tableId: number): string {
  return `capture_${tableId}`;
}

export function guardFunctionName(tableId: number): string {
  return `capture_${tableId}_guard`;
}

/** The text whose 64-bit hash keys the advisory lock of a stream. */
export function streamLockText(schema: string, stream: string): string {
  return `pg2crate:${schema}:${stream}`;
}
