// JSON text with exact numbers (pure). JSON.stringify would round a number a double cannot hold;
// here a LosslessNumber is written as its own digits, so a bigint inside a jsonb object or a
// numeric(38,10) reaches CrateDB exactly as it left Postgres.
import { LosslessNumber } from 'lossless-json';
import type { JsonValue } from '../../core/change.js';

/** JSON text of a value, LosslessNumber as its exact digits. */
export function toJson(v: JsonValue | undefined): string {
  if (v === null || v === undefined) return 'null';
  switch (typeof v) {
    case 'string': return JSON.stringify(v);
    case 'boolean': return v ? 'true' : 'false';
    // A NaN or infinite JS number cannot come from parsed JSON; CrateDB reads the strings.
    case 'number': return Number.isFinite(v) ? JSON.stringify(v) : JSON.stringify(String(v));
    default:
  }
  if (v instanceof LosslessNumber) return v.value;
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) out += (i > 0 ? ',' : '') + toJson(v[i]);
    return `${out}]`;
  }
  let out = '{';
  let first = true;
  for (const k in v) {
    out += `${first ? '' : ','}${JSON.stringify(k)}:${toJson(v[k])}`;
    first = false;
  }
  return `${out}}`;
}

