// What the capture of a shaped table costs the application's writes: a table with an excluded and
// a hashed column (README "Shaping the target") beside the same table captured plain, both through
// `tables add` (whatever src/capture/triggers.ts generates today), with no drainer running.
//   calls  --calls one-row statements in a server-side loop (a DO block: no client round trip),
//          INSERT then UPDATE then DELETE of the same rows; µs per statement, what a trigger call
//          costs on top of the statement;
//   bulk   one INSERT … SELECT of --bulk-rows rows, one UPDATE of all of them, one DELETE; seconds.
// Rounds are interleaved (plain, shaped; the order alternating), --rounds of them, min / median / max.
import pg from 'pg';
import { startCluster } from '../test/helpers/cluster.js';
import { captureWithPg2crate } from './capture-common.js';
import { fmtSpread, note, printTable, spread, type BenchArgs } from './report.js';

export const description = 'shaped capture (excludeColumns + hashColumns) beside plain capture: one-row INSERT/UPDATE/DELETE loops and bulk statements, interleaved';

const TABLE = (name: string) => `create table ${name} (id int primary key, tenant int not null, name text, email text, ssn text, note text)`;
const ROW = (g: string) => `${g}, ${g} % 10, 'name ' || ${g}, 'p' || ${g} || '@example.com', 'ssn-' || ${g}, null`;

type Step = 'insert1' | 'update1' | 'delete1' | 'insertN' | 'updateN' | 'deleteN';
const STEPS: Step[] = ['insert1', 'update1', 'delete1', 'insertN', 'updateN', 'deleteN'];

async function timed(db: pg.Client, sql: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  await db.query(sql);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function round(db: pg.Client, table: string, calls: number, rows: number): Promise<Record<Step, number>> {
  await db.query(`truncate ${table}; truncate pg2crate.outbox; checkpoint`);
  const loop = (stmt: string) => `do $$ begin for i in 1..${calls} loop ${stmt}; end loop; end $$`;
  const us = (s: number) => (s / calls) * 1e6;
  const insert1 = us(await timed(db, loop(`insert into ${table} values (${ROW('i')})`)));
  const update1 = us(await timed(db, loop(`update ${table} set name = 'x' || i where id = i`)));
  const delete1 = us(await timed(db, loop(`delete from ${table} where id = i`)));
  await db.query(`truncate pg2crate.outbox; checkpoint`);
  const insertN = await timed(db, `insert into ${table} select ${ROW('g')} from generate_series(1, ${rows}) g`);
  const updateN = await timed(db, `update ${table} set name = name || 'x'`);
  const deleteN = await timed(db, `delete from ${table}`);
  return { insert1, update1, delete1, insertN, updateN, deleteN };
}

export async function run(args: BenchArgs): Promise<object> {
  const rounds = Number(args.rounds ?? 3);
  const calls = Number(args.calls ?? 20000);
  const rows = Number(args['bulk-rows'] ?? 200000);
  const cluster = await startCluster();
  const db = new pg.Client({ connectionString: cluster.url() });
  try {
    await db.connect();
    await db.query(`${TABLE('plain')}; ${TABLE('shaped')}`);
    const target = await cluster.createDatabase('target');
    process.env.PG2CRATE_HASH_SALT = 'bench-salt';
    await captureWithPg2crate(cluster.url(), target, [
      { schema: 'public', table: 'plain' },
      { schema: 'public', table: 'shaped', excludeColumns: ['ssn'], hashColumns: ['email'], hashSalt: 'bench-salt' },
    ]);
    const out: Record<string, Record<Step, number[]>> = { plain: {} as Record<Step, number[]>, shaped: {} as Record<Step, number[]> };
    for (const v of Object.values(out)) for (const s of STEPS) v[s] = [];
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? ['plain', 'shaped'] : ['shaped', 'plain'];
      for (const t of order) {
        const got = await round(db, t, calls, rows);
        for (const s of STEPS) out[t][s].push(got[s]);
      }
      note(`round ${r + 1}/${rounds} done`);
    }
    const spreads = Object.fromEntries(Object.entries(out).map(([t, v]) => [t, Object.fromEntries(STEPS.map((s) => [s, spread(v[s])]))]));
    printTable(
      `capture of a plain and a shaped table (${calls} one-row statements: µs each; ${rows}-row bulk statements: s), min / median / max of ${rounds} rounds`,
      ['step', 'plain', 'shaped'],
      STEPS.map((s) => [s, fmtSpread(spreads.plain[s]), fmtSpread(spreads.shaped[s])]),
    );
    return { rounds, calls, rows, results: spreads };
  } finally {
    await db.end().catch(() => {});
    await cluster.stop();
  }
}
