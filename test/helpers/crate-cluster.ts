// A real CrateDB cluster for test/cratedb/cluster.test.ts, described by the environment (nothing
// here knows where CrateDB is installed):
//   CRATEDB_CLUSTER_URLS      the nodes' HTTP URLs, comma-separated (credentials as in CRATEDB_URL)
//   CRATEDB_CLUSTER_PID_FILE  the pid file of node {n}, n the node's 1-based position in that list
//   CRATEDB_CLUSTER_START     a shell command that starts node {n} if it is down and leaves running
//                             nodes alone ({n} is replaced; CRATEDB_NODE=n is set as well)
// A node is killed with SIGKILL (a crash, no goodbye to the cluster) and started again with the
// command; it counts as back once it answers GET / with "ok": true and sees every node.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CrateClient } from '../../src/sink/cratedb/crate-client.js';
import { loadConfig } from '../../src/core/config.js';

const URLS = process.env.CRATEDB_CLUSTER_URLS;
const PID_FILE = process.env.CRATEDB_CLUSTER_PID_FILE;
const START = process.env.CRATEDB_CLUSTER_START;

/** For `describe(…, { skip })`: false when the cluster is described, otherwise why the test skips. */
export const skipWithoutCrateCluster: string | false = URLS && PID_FILE && START
  ? false
  : 'CRATEDB_CLUSTER_URLS, CRATEDB_CLUSTER_PID_FILE and CRATEDB_CLUSTER_START are not all set: the cluster test needs a real CrateDB cluster of three nodes ' +
    '(README: Running against a CrateDB cluster)';

/** The cluster as CRATEDB_URL gives it to pg2crate: the same list. */
export const CRATEDB_CLUSTER_URLS = URLS ?? '';

function clusterTarget() {
  const t = loadConfig({ DATABASE_URL: 'postgres://unused@127.0.0.1/unused', CRATEDB_URL: URLS, CRATEDB_USER: process.env.CRATEDB_USER, CRATEDB_PASSWORD: process.env.CRATEDB_PASSWORD }).target;
  if (t.kind !== 'cratedb') throw new Error('unreachable');
  return t;
}

/** The nodes' URLs (without credentials), in the order given. */
export function clusterNodeUrls(): readonly string[] {
  return clusterTarget().urls;
}

/** A client over all nodes, built from the configuration as pg2crate builds its own. */
export function clusterClient(): CrateClient {
  const t = clusterTarget();
  return new CrateClient({ url: t.urls, username: t.username, password: t.password, timeoutMs: 60_000 });
}

/** A client for node `n` (1-based) alone. */
export function nodeClient(n: number): CrateClient {
  const t = clusterTarget();
  return new CrateClient({ url: t.urls[n - 1], username: t.username, password: t.password, timeoutMs: 10_000 });
}

/** The pid of node `n` when it runs, else null. */
export function nodePid(n: number): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(PID_FILE!.replaceAll('{n}', String(n)), 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

/** SIGKILLs node `n` and waits until its process is gone. */
export async function killNode(n: number): Promise<number> {
  const pid = nodePid(n);
  if (pid === null) throw new Error(`node ${n} does not run (no live pid in ${PID_FILE!.replaceAll('{n}', String(n))})`);
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return pid;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`node ${n} (pid ${pid}) still runs 10 s after SIGKILL`);
}

/** Runs the start command for node `n` and waits for it to end (it starts the node in the background). */
export function startNode(n: number, timeoutMs = 300_000): Promise<void> {
  const cmd = START!.replaceAll('{n}', String(n));
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', cmd], { env: { ...process.env, CRATEDB_NODE: String(n) }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`starting node ${n} failed (${signal ?? `exit ${code}`}): ${output.trim().slice(-500)}`));
    });
  });
}

/** Waits until node `n` answers GET / with "ok": true and sees all `size` nodes. */
export async function waitNodeJoined(n: number, size: number, timeoutMs = 300_000): Promise<void> {
  const c = nodeClient(n);
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      try {
        await c.version();
        const nodes = Number((await c.sql('SELECT count(*) FROM sys.nodes')).rows[0][0]);
        if (nodes === size) return;
      } catch {
        // not up or not joined yet
      }
      if (Date.now() > deadline) throw new Error(`node ${n} did not join a cluster of ${size} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    c.close();
  }
}

/** The position (1-based) of the elected master in the URL list, or null when no listed node is master. */
export async function masterNode(c: CrateClient): Promise<number | null> {
  const res = await c.sql('SELECT n.rest_url FROM sys.nodes n, sys.cluster c WHERE n.id = c.master_node');
  const restUrl = String(res.rows[0]?.[0] ?? '');
  const i = clusterNodeUrls().findIndex((u) => new URL(u).host === restUrl);
  return i < 0 ? null : i + 1;
}
