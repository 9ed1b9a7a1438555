// The soak's target: a Postgres database in its own throwaway cluster (so it can be taken away), or
// CrateDB at CRATEDB_URL in a schema of its own that is dropped at the end. Either way the
// replicators reach it through a loopback TCP proxy (test/helpers/tcp-proxy.ts), which can reset
// every connection for a while; a Postgres target can also be stopped and started for real. The
// soak's own reads (the comparison) go straight to the target.
import type pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { crateClient, dropSchema } from '../helpers/cratedb.js';
import { pool } from '../helpers/replication.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { qualify } from '../../src/core/identifiers.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';
import type { TargetSide } from './compare.js';
import { pause } from './random.js';

export interface SoakTarget {
  readonly kind: 'postgres' | 'cratedb';
  /** target settings for replicators and CLI runs (through the proxy) */
  readonly env: Record<string, string>;
  readonly side: TargetSide;
  /** what the away fault did, e.g. "connections reset for 14 s" */
  away(mode: 'proxy' | 'stop', ms: number, signal: AbortSignal): Promise<string>;
  /** values the target refuses, written into soak.accounts.owner for a while: dead letters */
  readonly poison: Poison;
  /** what to say in the summary about the target */
  describe(): string;
  close(): Promise<void>;
}

export interface Poison {
  /** SQL for a poisoned owner of the row being updated (may name its id) */
  readonly value: string;
  /** makes the target refuse poisoned rows (target schema and table of soak.accounts); false when it cannot now */
  start(schema: string, table: string): Promise<boolean>;
  /** makes the poisoned rows acceptable again, so that `dead-letters retry` can bring them */
  end(src: pg.Pool, schema: string, table: string): Promise<void>;
}

const POISON = 'soak_poison';

export async function startPostgresTarget(): Promise<SoakTarget> {
  const cluster: Cluster = await startCluster();
  let proxy: TcpProxy | null = null;
  let db: pg.Pool | null = null;
  try {
    const url = await cluster.createDatabase('soak_dst');
    db = pool(url, 4);
    db.on('error', () => {});
    // A page the target confirmed must survive a stop of the target.
    await db.query(`alter database "${new URL(url).pathname.slice(1)}" set synchronous_commit = on`);
    const u = new URL(url);
    proxy = await startTcpProxy(u.hostname, Number(u.port));
    const p = proxy;
    const d = db;
    return {
      kind: 'postgres',
      env: { TARGET_DATABASE_URL: proxy.rewrite(url) },
      side: { kind: 'postgres', pool: db },
      async away(mode, ms, signal) {
        if (mode === 'stop') {
          await cluster.restart('fast', ms);
          return `target cluster stopped for ${Math.round(ms / 1000)} s`;
        }
        p.down();
        await pause(ms, signal);
        p.up();
        return `target connections reset for ${Math.round(ms / 1000)} s`;
      },
      // A CHECK on the target refuses them; dropping it makes the letters' retry succeed with the
      // source unchanged.
      poison: {
        value: `'poison ☠ ' || id`,
        async start(schema, table) {
          try {
            await d.query(`alter table ${qualify(schema, table)} add constraint ${POISON} check (owner not like '%☠%') not valid`);
            return true;
          } catch {
            return false;
          }
        },
        async end(_src, schema, table) {
          await d.query(`alter table ${qualify(schema, table)} drop constraint if exists ${POISON}`);
        },
      },
      describe: () => `postgres (own cluster ${url.replace(/\/[^/]*$/, '')})`,
      async close() {
        await d.end().catch(() => {});
        await p.close();
        await cluster.stop();
      },
    };
  } catch (err) {
    await db?.end().catch(() => {});
    await proxy?.close();
    await cluster.stop();
    throw err;
  }
}

export async function startCrateTarget(crateUrl: string): Promise<SoakTarget> {
  const schema = `soak_${process.pid}_${Date.now().toString(36)}`;
  const client: CrateClient = crateClient();
  const u = new URL(crateUrl);
  const proxy = await startTcpProxy(u.hostname, Number(u.port || (u.protocol === 'https:' ? 443 : 4200)));
  await client.version();
  return {
    kind: 'cratedb',
    env: { CRATEDB_URL: proxy.rewrite(crateUrl), PG2CRATE_TARGET_SCHEMA: schema },
    side: { kind: 'cratedb', client },
    async away(_mode, ms, signal) {
      proxy.down();
      await pause(ms, signal);
      proxy.up();
      return `CrateDB connections reset for ${Math.round(ms / 1000)} s`;
    },
    // CrateDB adds no CHECK to an existing table; a text over the 32,766 bytes an indexed TEXT column
    // holds is refused instead (shared/CRATEDB.md, must-know 4). The source rows are shortened at
    // the end, as an operator would fix them, and the letters retried.
    poison: {
      value: `repeat('☠', 11000) || id`,
      start: async () => true,
      async end(src) {
        await src.query(`update soak.accounts set owner = 'was poison ' || id where length(owner) > 10000`);
      },
    },
    describe: () => `cratedb ${crateUrl} schema ${schema}`,
    async close() {
      await proxy.close();
      await dropSchema(client, schema).catch(() => {});
      client.close();
    },
  };
}
