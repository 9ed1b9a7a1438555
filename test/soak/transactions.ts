// The transaction kinds the writers pick from. Each returns true once something committed; an error
// propagates to the writer loop (writers.ts), which rolls back and classifies it.
import type pg from 'pg';
import { pause, type Rng } from './random.js';
import { ACCOUNT_KEYS, BIG_ROWS, DDL_TABLES, DOC_KEYS, PAIR_KEYS } from './source-schema.js';
import * as v from './values.js';
import type { Workload } from './writers.js';

export interface TxContext {
  readonly r: Rng;
  readonly w: Workload;
  readonly writer: number;
  inTransaction: boolean;
  q<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<T>>;
  begin(): Promise<void>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  autocommitted(): void;
}

type Statement = [string, unknown[]];
const PAIR_B = ['x', 'y', "o'q", 'ü', 'z 1', 'Ω"'];

const acct = (r: Rng) => r.int(1, ACCOUNT_KEYS);
const doc = (r: Rng) => String(v.BIG_ID + BigInt(r.int(1, DOC_KEYS)));

/** One random statement on one of the small tables. */
function statement(r: Rng): Statement {
  const p = r.next();
  switch (r.int(0, 3)) {
    case 0:
      if (p < 0.3) {
        return [`insert into soak.accounts (id, balance, owner, tags, doc, updated_at) values ($1, $2, $3, $4, $5, $6)
                 on conflict (id) do update set balance = excluded.balance, owner = excluded.owner, doc = excluded.doc, updated_at = excluded.updated_at`,
        [acct(r), v.numeric38(r), v.text(r), v.textArray(r), v.jsonDoc(r), v.timestamp(r)]];
      }
      if (p < 0.6) return [`update soak.accounts set balance = balance + $2, owner = $3, updated_at = clock_timestamp() where id = $1`, [acct(r), v.numeric38(r), v.text(r)]];
      if (p < 0.75) {
        return [`update soak.accounts set balance = balance * 1.0000000001, tags = (array_append(tags, $3))[greatest(1, cardinality(tags) - 3):]
                  where id between $1 and $1 + $2`, [acct(r), r.int(0, 30), v.text(r, 1)]];
      }
      return [`delete from soak.accounts where id = $1`, [acct(r)]];
    case 1:
      if (p < 0.4) return [`insert into soak.pairs (a, b, val) values ($1, $2, $3) on conflict (a, b) do update set val = excluded.val`, [r.int(1, PAIR_KEYS), r.pick(PAIR_B), v.numeric20(r)]];
      if (p < 0.7) return [`update soak.pairs set val = val / 2 + 0.0001 where a = $1`, [r.int(1, PAIR_KEYS)]];
      return [`delete from soak.pairs where a = $1 and b = $2`, [r.int(1, PAIR_KEYS), r.pick(PAIR_B)]];
    case 2:
      if (p < 0.4) {
        return [`insert into soak.docs (id, body, nums, note) values ($1, $2, $3::bigint[], $4) on conflict (id) do update set body = excluded.body, nums = excluded.nums`,
          [doc(r), v.jsonDoc(r), v.bigintArray(r), v.text(r)]];
      }
      if (p < 0.75) {
        return [`update soak.docs set body = jsonb_set(case when jsonb_typeof(body) = 'object' then body else '{}' end, '{n}', to_jsonb($2::int)),
                        nums = coalesce(nums[1:3], '{}') || $3::bigint where id = $1`, [doc(r), r.int(0, 1000), v.bigint(r)]];
      }
      return [`delete from soak.docs where id = $1`, [doc(r)]];
    default:
      if (p < 0.5) return [`insert into soak.scratch (id, v, n) values ($1, $2, $3) on conflict (id) do update set v = excluded.v, n = soak.scratch.n + 1`, [r.int(1, 400), v.text(r), v.bigint(r)]];
      if (p < 0.8) return [`update soak.scratch set v = $2 where id between $1 and $1 + 5`, [r.int(1, 400), v.text(r)]];
      return [`delete from soak.scratch where id = $1`, [r.int(1, 400)]];
  }
}

/** A key change on one of the small tables (a collision with an existing key fails: 23505). */
function keyChange(r: Rng): Statement {
  switch (r.int(0, 3)) {
    case 0: return [`update soak.accounts set id = $2 where id = $1`, [acct(r), acct(r)]];
    case 1: return [`update soak.pairs set a = $2 where a = $1`, [r.int(1, PAIR_KEYS), r.int(1, PAIR_KEYS)]];
    case 2: return [`update soak.pairs set b = b || '+' where a = $1 and length(b) < 6`, [r.int(1, PAIR_KEYS)]];
    default: return [`update soak.docs set id = $2 where id = $1`, [doc(r), doc(r)]];
  }
}

function bigStatement(r: Rng): Statement {
  const id = r.int(1, BIG_ROWS);
  const p = r.next();
  if (p < 0.45) return [`update soak.big set amount = amount + 1, label = $2 where id = $1`, [id, v.text(r, 2)]];
  if (p < 0.6) return [`update soak.big set attrs = $3 where id between $1 and $1 + $2`, [id, r.int(0, 60), v.jsonDoc(r)]];
  if (p < 0.75) return [`delete from soak.big where id = $1`, [id]];
  if (p < 0.9) {
    return [`insert into soak.big (id, grp, amount, label, created, attrs) values ($1, $2, $3, $4, $5, $6)
             on conflict (id) do update set label = excluded.label, amount = excluded.amount`,
    [r.int(1, BIG_ROWS + 60_000), r.int(0, 96), `${r.int(0, 99999)}.${r.int(10, 99)}`, v.text(r), v.timestamp(r), v.jsonDoc(r)]];
  }
  return [`update soak.big set id = $2 where id = $1`, [id, r.int(BIG_ROWS + 60_001, BIG_ROWS + 120_000)]];
}

async function run(ctx: TxContext, [sql, params]: Statement): Promise<number> {
  return (await ctx.q(sql, params)).rowCount ?? 0;
}

async function inTransaction(ctx: TxContext, body: () => Promise<void>, rollbackChance = 0): Promise<boolean> {
  await ctx.begin();
  await body();
  if (ctx.r.chance(rollbackChance)) {
    await ctx.rollback();
    return false;
  }
  await ctx.commit();
  return true;
}

export type KindName =
  | 'single' | 'multi' | 'savepoint' | 'insert-delete' | 'key-change' | 'merge' | 'multi-row' | 'big' | 'seq' | 'seq-burst'
  | 'long' | 'truncate' | 'ddl' | 'poison' | 'parted';

export const KINDS: Record<KindName, (ctx: TxContext) => Promise<boolean>> = {
  async single(ctx) {
    await run(ctx, statement(ctx.r));
    ctx.autocommitted();
    return true;
  },

  multi: (ctx) => inTransaction(ctx, async () => {
    for (let n = ctx.r.int(2, 6); n > 0; n--) await run(ctx, ctx.r.chance(0.15) ? keyChange(ctx.r) : statement(ctx.r));
  }, 0.1),

  /** changes inside a savepoint that is rolled back must not reach the target; those around it must */
  savepoint: (ctx) => inTransaction(ctx, async () => {
    await run(ctx, statement(ctx.r));
    await ctx.q('savepoint s1');
    try {
      for (let n = ctx.r.int(1, 3); n > 0; n--) await run(ctx, ctx.r.chance(0.3) ? keyChange(ctx.r) : statement(ctx.r));
    } catch (err) {
      // a collision inside the savepoint is undone with it
      if ((err as { code?: string }).code !== '23505') throw err;
    }
    await ctx.q('rollback to savepoint s1');
    if (ctx.r.chance(0.5)) {
      await ctx.q('savepoint s2');
      await run(ctx, statement(ctx.r));
      await ctx.q('release savepoint s2');
    }
    await run(ctx, statement(ctx.r));
  }),

  /** rows inserted and deleted again in the same transaction: nothing of them reaches the target */
  'insert-delete': (ctx) => inTransaction(ctx, async () => {
    const base = 1_000_000 + ctx.writer * 100_000 + ctx.r.int(0, 90_000);
    const n = ctx.r.int(1, 50);
    await ctx.q(`insert into soak.accounts (id, balance, owner, doc) select g, g, $3, $4 from generate_series($1::bigint, $1::bigint + $2 - 1) g`,
      [base, n, v.text(ctx.r), v.jsonDoc(ctx.r)]);
    if (ctx.r.chance(0.5)) await ctx.q(`update soak.accounts set owner = 'transient' where id between $1 and $1 + $2`, [base, n]);
    if (ctx.r.chance(0.3)) await ctx.q(`update soak.accounts set id = id + 50000 where id between $1 and $1 + $2`, [base, n]);
    await ctx.q(`delete from soak.accounts where id between $1 and $1 + $2 or id between $1 + 50000 and $1 + 50000 + $2`, [base, n]);
    const seq = await ctx.q<{ id: string }>(`insert into soak.seq_log (id, writer, payload) values (nextval('soak.seq_log_id'), $1, 'transient') returning id::text`, [ctx.writer]);
    await ctx.q(`delete from soak.seq_log where id = $1`, [seq.rows[0].id]);
  }),

  'key-change': async (ctx) => {
    await run(ctx, keyChange(ctx.r));
    ctx.autocommitted();
    return true;
  },

  merge: (ctx) => inTransaction(ctx, async () => {
    const ids = new Set<number>();
    for (let n = ctx.r.int(1, 12); n > 0; n--) ids.add(acct(ctx.r));
    const rows = [...ids].map((id) => ({ id, delta: v.numeric20(ctx.r), owner: v.text(ctx.r), del: ctx.r.chance(0.2) }));
    await ctx.q(`merge into soak.accounts a
                 using (select * from jsonb_to_recordset($1::jsonb) as s(id bigint, delta numeric, owner text, del boolean)) s on a.id = s.id
                 when matched and s.del then delete
                 when matched then update set balance = a.balance + s.delta, owner = s.owner, updated_at = clock_timestamp()
                 when not matched then insert (id, balance, owner, tags, doc) values (s.id, s.delta, s.owner, '{merged}', '{"merged": true}')`,
    [JSON.stringify(rows)]);
  }),

  'multi-row': (ctx) => inTransaction(ctx, async () => {
    const r = ctx.r;
    switch (r.int(0, 3)) {
      case 0:
        await ctx.q(`insert into soak.docs (id, body, nums, note) select $1::bigint + g, jsonb_build_object('g', g, 't', $3::text), array[$1::bigint + g], $3
                       from generate_series(0, $2) g on conflict (id) do update set body = excluded.body, note = excluded.note`,
        [doc(r), r.int(5, 120), v.text(r)]);
        break;
      case 1:
        await ctx.q(`update soak.pairs set val = val + 1 where a between $1 and $1 + $2`, [r.int(1, PAIR_KEYS), r.int(5, 60)]);
        break;
      case 2:
        await ctx.q(`delete from soak.accounts where id between $1 and $1 + 200 and id % 7 = $2`, [acct(r), r.int(0, 6)]);
        await ctx.q(`insert into soak.accounts (id, balance, owner, tags) select g, g * 0.5, $2, array[$2] from generate_series($1::bigint, $1::bigint + 40) g on conflict do nothing`,
          [acct(r), v.text(r)]);
        break;
      default:
        await ctx.q(`insert into soak.seq_log (id, writer, payload) select nextval('soak.seq_log_id'), $1, 'multi ' || g from generate_series(1, $2) g`, [ctx.writer, r.int(2, 200)]);
    }
  }),

  big: async (ctx) => {
    if (ctx.r.chance(0.7)) {
      await run(ctx, bigStatement(ctx.r));
      ctx.autocommitted();
      return true;
    }
    return inTransaction(ctx, async () => {
      for (let n = ctx.r.int(2, 5); n > 0; n--) await run(ctx, bigStatement(ctx.r));
    }, 0.1);
  },

  /** the shape that once lost rows: single-row autocommit inserts with sequential ids */
  async seq(ctx) {
    await ctx.q(`insert into soak.seq_log (id, writer, payload) values (nextval('soak.seq_log_id'), $1, $2)`, [ctx.writer, v.text(ctx.r, 1)]);
    ctx.autocommitted();
    return true;
  },

  /** the same at full speed for a moment */
  async 'seq-burst'(ctx) {
    const n = ctx.r.int(100, 800);
    for (let i = 0; i < n && !ctx.w.signal.aborted; i++) {
      await ctx.q(`insert into soak.seq_log (id, writer, payload) values (nextval('soak.seq_log_id'), $1, 'burst')`, [ctx.writer]);
      ctx.autocommitted();
    }
    return true;
  },

  /** a transaction held open for seconds while the others commit around it */
  async long(ctx) {
    ctx.w.longOpen++;
    try {
      return await inTransaction(ctx, async () => {
        for (let n = ctx.r.int(1, 4); n > 0; n--) await run(ctx, ctx.r.chance(0.3) ? bigStatement(ctx.r) : statement(ctx.r));
        await ctx.q(`insert into soak.seq_log (id, writer, payload) values (nextval('soak.seq_log_id'), $1, 'long')`, [ctx.writer]);
        await pause(ctx.r.int(3_000, 20_000), ctx.w.signal);
        for (let n = ctx.r.int(1, 3); n > 0; n--) await run(ctx, statement(ctx.r));
      }, 0.2);
    } finally {
      ctx.w.longOpen--;
    }
  },

  async truncate(ctx) {
    ctx.w.nextExclusiveAt = Date.now() + ctx.r.int(8_000, 25_000);
    const table = ctx.r.chance(0.7) ? 'scratch' : 'pairs';
    const refill = ctx.r.int(0, table === 'scratch' ? 300 : 100);
    await inTransaction(ctx, async () => {
      await ctx.q(`set local lock_timeout = '3s'`);
      await ctx.q(`truncate soak.${table}`);
      if (table === 'scratch') await ctx.q(`insert into soak.scratch (id, v, n) select g, 'refill ' || g, g * 1000003 from generate_series(1, $1) g`, [refill]);
      else await ctx.q(`insert into soak.pairs (a, b, val) select g, 'x', g from generate_series(1, $1) g`, [refill]);
    });
    ctx.w.note(`writer ${ctx.writer}: truncate soak.${table} and ${refill} rows inserted again, committed`);
    return true;
  },

  /** ALTER TABLE ADD COLUMN (sometimes with a default: the table is copied again) or DROP COLUMN */
  async ddl(ctx) {
    const r = ctx.r;
    ctx.w.nextExclusiveAt = Date.now() + r.int(8_000, 25_000);
    const table = r.pick(DDL_TABLES);
    const extra = (await ctx.q<{ name: string }>(
      `select attname as name from pg_attribute where attrelid = $1::regclass and attname like 'x\\_%' and attnum > 0 and not attisdropped`, [`soak.${table}`],
    )).rows.map((x) => x.name);
    let ddl = '';
    await inTransaction(ctx, async () => {
      await ctx.q(`set local lock_timeout = '3s'`);
      if (extra.length >= 3 || (extra.length > 0 && r.chance(0.35))) {
        ddl = `alter table soak.${table} drop column ${r.pick(extra)}`;
        await ctx.q(ddl);
        return;
      }
      const col = `x_${ctx.w.nextColumn++}`;
      const [type, value, dflt] = r.pick([
        ['text', `'added ' || $1::text`, `'default ü'`],
        ['bigint', `$1::bigint * 9007199254`, `9007199254740993`],
        ['jsonb', `jsonb_build_object('k', $1::int)`, `'{"d": [1, "x"]}'`],
        ['timestamptz', `clock_timestamp()`, `clock_timestamp()`],
        ['numeric(20,6)', `$1::numeric / 7`, `1.5`],
        ['text[]', `array['a', $1::text]`, `'{"x y",z}'`],
      ] as const);
      ddl = `alter table soak.${table} add column ${col} ${type}${r.chance(0.35) ? ` default ${dflt}` : ''}`;
      await ctx.q(ddl);
      const key = table === 'pairs' ? 'a' : 'id';
      await ctx.q(`update soak.${table} set ${col} = ${value} where ${key} % 5 = $1::int % 5`, [r.int(0, 1000)]);
      ddl += `; update of a fifth of its rows`;
    });
    ctx.w.note(`writer ${ctx.writer}: ${ddl}, committed`);
    return true;
  },

  /** a value the target refuses while the poison phase lasts (operations.ts): a dead letter */
  async poison(ctx) {
    await ctx.q(`update soak.accounts set owner = ${ctx.w.poison ?? 'owner'} where id = $1`, [acct(ctx.r)]);
    ctx.autocommitted();
    return true;
  },

  /** --partitions: writes through a partition's own name (and the parent's now and then) */
  async parted(ctx) {
    const regions = ctx.w.regions!;
    const region = ctx.r.pick(regions);
    const via = ctx.r.chance(0.8) ? `soak.parted_r${region}` : 'soak.parted';
    const id = ctx.r.int(1, 4000);
    const p = ctx.r.next();
    if (p < 0.4) {
      await ctx.q(`insert into ${via} (id, region, v, amount, at) values ($1, $2, $3, $4, $5) on conflict (id, region) do update set v = excluded.v, amount = excluded.amount`,
        [id, region, v.text(ctx.r), `${ctx.r.int(0, 99999)}.${ctx.r.int(10, 99)}`, v.timestamp(ctx.r)]);
    } else if (p < 0.75) {
      await ctx.q(`update ${via} set amount = amount + 1, v = $3 where region = $2 and id between $1 and $1 + 20`, [id, region, v.text(ctx.r, 1)]);
    } else if (p < 0.9) {
      await ctx.q(`delete from ${via} where region = $2 and id = $1`, [id, region]);
    } else {
      await ctx.q(`update ${via} set id = $3 where region = $2 and id = $1`, [id, region, ctx.r.int(1, 4000)]);
    }
    ctx.autocommitted();
    return true;
  },
};
