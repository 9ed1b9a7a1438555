// pgoutput row messages → Changes: the row as to_jsonb's JSON text, its key, key moves, and
// partial images for unchanged TOASTed values.
//
// An insert is a full image. A delete carries the replica identity (K) or, with REPLICA IDENTITY
// FULL, the old row (O): its key columns become the delete's row. An update carries the old key
// only when the key changed (K; always the old row with FULL): then the old key is deleted and the
// new row upserted, as the capture trigger does. Columns pgoutput marks "unchanged" (TOASTed values
// the update did not touch) are absent: the change is partial and updates only what it carries.
// A partial change that also moved its key has no row under the new key to update, so the absent
// values are read from the source's current row (the only I/O here).
import { stringify as losslessStringify } from 'lossless-json';
import type pg from 'pg';
import type { Pgoutput } from 'pg-logical-replication';
import type { Change, Op } from '../../core/change.js';
import { keyOf, parseRow } from '../../core/change.js';
import { TableError } from '../../core/errors.js';
import { quoteIdent } from '../../core/identifiers.js';
import { unkeyedReason } from '../page-keys.js';
import type { RelationPlan } from './relations.js';
import { rowJson, type ColumnText } from './text-values.js';

export interface RowContext {
  nextId: () => number;
  /** for the current values of a moved row's unchanged TOASTed columns */
  db: pg.Pool;
}

function json(plan: RelationPlan, source: Record<string, ColumnText>, only?: readonly string[]): string {
  const values = plan.names.map((n) => (only && !only.includes(n) ? undefined : source[n]));
  return rowJson(plan.names, plan.kinds, plan.order, values);
}

/** Appends the changes of one insert, update or delete of a captured table to `out`. */
export async function rowChanges(
  plan: RelationPlan,
  msg: Pgoutput.MessageInsert | Pgoutput.MessageUpdate | Pgoutput.MessageDelete,
  out: Change[],
  ctx: RowContext,
): Promise<void> {
  const tableId = plan.tableId!;
  const push = (op: Op, raw: string, partial = false) => {
    const row = parseRow(raw);
    const change: Change = { id: ctx.nextId(), tableId, op, key: keyOf(row, plan.keyColumns), row, raw };
    if (partial) change.partial = true;
    out.push(change);
  };
  const old = msg.tag === 'insert' ? undefined : msg.key ?? msg.old;
  if (plan.keyMissing.length > 0) {
    // Written under other key names than the registry's: it matches no row of the target, and
    // keyed by a null it would be coalesced with others. A key of its own, and parked (drainer.ts).
    const raw = json(plan, msg.tag === 'delete' ? old ?? {} : msg.new);
    const id = ctx.nextId();
    const op: Op = msg.tag === 'insert' ? 'I' : msg.tag === 'update' ? 'U' : 'D';
    out.push({ id, tableId, op, key: `\u0000event ${id}`, row: parseRow(raw), raw, unkeyed: unkeyedReason(plan.keyMissing, plan.name, plan.keyColumns) });
    return;
  }
  if (msg.tag === 'insert') {
    push('I', json(plan, msg.new));
    return;
  }
  if (msg.tag === 'delete') {
    if (!old) throw new TableError(`a delete on ${plan.name} carries no key; check its REPLICA IDENTITY`);
    push('D', json(plan, old, plan.keyColumns));
    return;
  }
  const values: Record<string, ColumnText> = { ...msg.new };
  for (const k of plan.keyColumns) {
    if (values[k] === undefined) values[k] = old?.[k];
    if (values[k] === undefined) {
      throw new TableError(`an update on ${plan.name} carries no value for key column ${k} (an unchanged TOASTed key); use trigger mode for this table`);
    }
  }
  const newKey = json(plan, values, plan.keyColumns);
  const oldKey = old ? json(plan, old, plan.keyColumns) : newKey;
  const moved = oldKey !== newKey;
  if (moved) push('D', oldKey);
  const absent = plan.names.filter((n) => values[n] === undefined);
  if (absent.length === 0) push('U', json(plan, values));
  else if (!moved) push('U', json(plan, values), true);
  else push('U', await filled(plan, values, absent, ctx.db));
}

/**
 * The new key's full row: the change's values, and the absent ones from the source's current row.
 * A value read here may be newer than the change; the change that wrote it comes later in the
 * stream and is applied after this one, so the target ends the same. A row gone by now is deleted
 * later in the stream: its absent values are left null meanwhile.
 */
async function filled(plan: RelationPlan, values: Record<string, ColumnText>, absent: string[], db: pg.Pool): Promise<string> {
  const present = parseRow(json(plan, values));
  const client = await db.connect();
  try {
    await client.query('begin');
    // The capture trigger's output settings, so that the values read here are the trigger's text.
    for (const s of [`set local timezone = 'UTC'`, `set local datestyle = 'ISO, YMD'`, `set local intervalstyle = 'postgres'`, `set local extra_float_digits = 1`, `set local bytea_output = 'hex'`]) {
      await client.query(s);
    }
    const name = (await client.query<{ t: string }>(`select $1::oid::regclass::text as t`, [plan.relid])).rows[0].t;
    const match = plan.keyColumns.map((k) => `t.${quoteIdent(k)} = k.${quoteIdent(k)}`).join(' and ');
    const res = await client.query<{ r: string }>(
      `select to_jsonb(t.*)::text as r from ${name} t, jsonb_populate_record(null::${name}, $1::jsonb) k where ${match}`,
      [json(plan, values, plan.keyColumns)],
    );
    await client.query('commit');
    const current = res.rows[0] ? parseRow(res.rows[0].r) : {};
    const row = { ...present };
    for (const c of absent) row[c] = current[c] ?? null;
    return losslessStringify(row) ?? '{}';
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
