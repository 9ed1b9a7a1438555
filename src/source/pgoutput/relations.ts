// What the stream's relation messages mean here: the registered table behind a relation, its key,
// and how each column's text becomes JSON.
//
// States per relation: unknown → planned (on its relation message: columns, their value kinds,
// the registered table) → re-planned on the next relation message (pgoutput sends one before the
// first change of a relation in a session and again after its schema changed). Column types are
// taken from the message (the schema as of the change, not as of now) and resolved once per type
// oid through pg_type: domains to their base, arrays to their element. A relation that is not in
// the registry (a table added to the publication by hand) has no table id; its changes are skipped
// with one warning.
import type pg from 'pg';
import { qualify } from '../../core/identifiers.js';
import { columnOrder, type ScalarKind, type ValueKind } from './text-values.js';
import { sameColumns } from '../page-keys.js';

type Queryable = pg.ClientBase | pg.Pool;

export interface RelationMessage {
  relationOid: number;
  schema: string;
  name: string;
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  columns: { name: string; typeOid: number }[];
}

export interface RelationPlan {
  relid: number;
  /** the registered table; null when the relation is not captured */
  tableId: number | null;
  /** schema.table for logs */
  name: string;
  names: string[];
  kinds: ValueKind[];
  /** column indexes in jsonb key order */
  order: number[];
  keyColumns: string[];
  /** key columns that are not among `names` (renamed: see replan()) */
  keyMissing: string[];
}

const SCALARS = new Map<number, ScalarKind>([
  [16, 'bool'], [20, 'number'], [21, 'number'], [23, 'number'], [700, 'number'], [701, 'number'], [1700, 'number'],
  [114, 'json'], [3802, 'jsonb'], [1114, 'timestamp'], [1184, 'timestamptz'],
]);

interface TypeRow {
  oid: string;
  typtype: string;
  base: string;
  elem: string;
  is_array: boolean;
  delim: string;
}

export class RelationMap {
  readonly #db: Queryable;
  readonly #schema: string;
  readonly #kinds = new Map<number, ValueKind>();
  readonly #plans = new Map<number, RelationPlan>();
  #registry: Map<number, { id: number; keyColumns: string[] }> | null = null;

  constructor(db: Queryable, schema: string) {
    this.#db = db;
    this.#schema = schema;
  }

  get(relid: number): RelationPlan | undefined {
    return this.#plans.get(relid);
  }

  /** Plans a relation from its message; re-reads the registry when the relation is not known there. */
  async plan(msg: RelationMessage): Promise<RelationPlan> {
    let reg = (await this.#readRegistry(false)).get(msg.relationOid);
    if (!reg) reg = (await this.#readRegistry(true)).get(msg.relationOid);
    const kinds: ValueKind[] = [];
    for (const c of msg.columns) kinds.push(await this.kindOf(c.typeOid));
    const names = msg.columns.map((c) => c.name);
    const plan: RelationPlan = {
      relid: msg.relationOid, tableId: reg?.id ?? null, name: `${msg.schema}.${msg.name}`, names, kinds, order: columnOrder(names), keyColumns: reg?.keyColumns ?? [],
      keyMissing: (reg?.keyColumns ?? []).filter((k) => !names.includes(k)),
    };
    this.#plans.set(msg.relationOid, plan);
    return plan;
  }

  /**
   * A plan whose key columns are not all among its columns (a key column renamed), with the key the
   * registry has now: the key watch sets it to the new names (ops/key-watch.ts), and no relation
   * message follows, since the table did not change again. The same plan when the registry's key is the same.
   */
  async replan(plan: RelationPlan): Promise<RelationPlan> {
    const reg = (await this.#readRegistry(true)).get(plan.relid);
    if (!reg || sameColumns(reg.keyColumns, plan.keyColumns)) return plan;
    const next = { ...plan, tableId: reg.id, keyColumns: reg.keyColumns, keyMissing: reg.keyColumns.filter((k) => !plan.names.includes(k)) };
    this.#plans.set(plan.relid, next);
    return next;
  }

  async #readRegistry(fresh: boolean): Promise<Map<number, { id: number; keyColumns: string[] }>> {
    if (this.#registry && !fresh) return this.#registry;
    const res = await this.#db.query<{ id: number; relid: string; key_columns: string[] }>(`select id, relid::int8::text as relid, key_columns from ${qualify(this.#schema, 'tables')}`);
    this.#registry = new Map(res.rows.map((r) => [Number(r.relid), { id: r.id, keyColumns: r.key_columns }]));
    return this.#registry;
  }

  /** The value kind of a type: domains resolved to their base, arrays to their element's kind. */
  async kindOf(oid: number): Promise<ValueKind> {
    const known = this.#kinds.get(oid);
    if (known !== undefined) return known;
    const scalar = SCALARS.get(oid);
    if (scalar) return scalar;
    const res = await this.#db.query<TypeRow>(
      `select t.oid::int8::text as oid, t.typtype, t.typbasetype::int8::text as base, t.typelem::int8::text as elem,
              t.typoutput = 'array_out'::regproc as is_array, e.typdelim as delim
         from pg_type t left join pg_type e on e.oid = t.typelem where t.oid = $1`,
      [oid],
    );
    const t = res.rows[0];
    let kind: ValueKind = 'text';
    if (t?.typtype === 'd') kind = await this.kindOf(Number(t.base));
    else if (t?.is_array) {
      const elem = await this.kindOf(Number(t.elem));
      kind = { array: typeof elem === 'string' ? elem : elem.array, delimiter: t.delim ?? ',' };
    }
    this.#kinds.set(oid, kind);
    return kind;
  }
}
