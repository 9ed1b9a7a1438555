// One throwaway cluster per test file: started in before() (or by the first call that needs it:
// Node 20 does not wait for one top-level before() to finish before it runs the next), and after
// the file's tests everything opened on it is closed in one order (child replicators killed, the
// file's own closing steps, pools ended, the cluster stopped), then the leak guard runs.
import { after, before } from 'node:test';
import type pg from 'pg';
import { startCluster, type Cluster } from './cluster.js';
import { killReplicators } from './child-replicator.js';
import { assertNoLeaks, makeConfig, pool, settle } from './replication.js';

export interface Databases {
  srcUrl: string;
  dstUrl: string;
  src: pg.Pool;
  dst: pg.Pool;
}

export interface SettledDatabases extends Databases {
  /** the replicator's environment: both URLs and the settings given */
  env: Record<string, string>;
}

export interface FileCluster {
  /** the cluster, once started (in a test, or in a hook after `databases()`) */
  readonly cluster: Cluster;
  /** a fresh source and target database, with pools ended after the file's tests */
  databases(srcMax?: number): Promise<Databases>;
  /** fresh databases, `ddl` run in the source, and its tables captured and loaded (settle) with `env` */
  settled(ddl: string, env: Record<string, string>, srcMax?: number): Promise<SettledDatabases>;
  /** a pool ended after the file's tests */
  pool(url: string, max?: number): pg.Pool;
  /** runs `step` after the file's tests, before the pools end (steps run in the order given) */
  onClose(step: () => unknown): void;
}

/** Starts a cluster for this test file and closes it, and all it tracks, after the file's tests. */
export function clusterForFile(): FileCluster {
  let cluster: Cluster | undefined;
  let starting: Promise<Cluster> | undefined;
  const started = () => (starting ??= startCluster().then((c) => (cluster = c)));
  const pools: pg.Pool[] = [];
  const steps: (() => unknown)[] = [];

  before(async () => {
    await started();
  });

  after(async () => {
    await killReplicators();
    for (const step of steps) await step();
    await Promise.all(pools.map((p) => p.end()));
    await cluster?.stop();
    await assertNoLeaks();
  });

  const bed: FileCluster = {
    get cluster(): Cluster {
      if (!cluster) throw new Error('the cluster is not started yet: use it in a test, or after `await databases()` in a hook');
      return cluster;
    },
    pool(url, max) {
      const p = pool(url, max);
      pools.push(p);
      return p;
    },
    async databases(srcMax) {
      const c = await started();
      const [srcUrl, dstUrl] = await Promise.all([c.createDatabase('src'), c.createDatabase('dst')]);
      return { srcUrl, dstUrl, src: bed.pool(srcUrl, srcMax), dst: bed.pool(dstUrl) };
    },
    async settled(ddl, more, srcMax) {
      const dbs = await bed.databases(srcMax);
      await dbs.src.query(ddl);
      const env = { DATABASE_URL: dbs.srcUrl, TARGET_DATABASE_URL: dbs.dstUrl, ...more };
      await settle(makeConfig(env), dbs.src);
      return { ...dbs, env };
    },
    onClose(step) {
      steps.push(step);
    },
  };
  return bed;
}
