// The metrics the Grafana dashboard and the Prometheus alert rules under deploy/ read, against a real
// /metrics scrape of a running replicator (after it applied changes), and the Kubernetes probes'
// routes against the same server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForFile } from '../helpers/file-cluster.js';
import { makeConfig, startReplicator, waitCaughtUp } from '../helpers/replication.js';
import { deployQueries, kubernetesObjects, metricNames } from '../helpers/deploy-files.js';

const bed = clusterForFile();

test('every metric the dashboard and the alert rules name is served on /metrics, and the probe routes answer', async () => {
  const { srcUrl, dstUrl, src } = await bed.databases();
  await src.query(`create table t (id int primary key, v text)`);
  const config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.t', PG2CRATE_HTTP_PORT: '0' });
  const rep = await startReplicator(config);
  try {
    await src.query(`insert into t select g, 'a' from generate_series(1, 50) g`);
    await waitCaughtUp(src);
    const base = `http://127.0.0.1:${rep.runner.httpPort}`;
    const scrape = await (await fetch(`${base}/metrics`)).text();
    const served = new Set([...scrape.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    assert.ok(served.has('pg2crate_events_applied_total'), scrape);
    const missing = deployQueries().flatMap((q) => metricNames(q.expr).filter((n) => !served.has(n)).map((n) => `${q.where}: ${n}`));
    assert.deepEqual(missing, [], `served: ${[...served].join(', ')}`);
    // the drainer-down alert looks for a series {state="idle"|"draining"} == 1: the holder has one
    assert.match(scrape, /^pg2crate_drainer_state\{state="(idle|draining)"\} 1$/m);
    const probes = kubernetesObjects().flatMap(({ object }) => (object.spec.template?.spec.containers ?? []).flatMap((c: Record<string, any>) =>
      [c.livenessProbe, c.readinessProbe].filter(Boolean).map((p: { httpGet: { path: string } }) => p.httpGet.path)));
    assert.deepEqual(probes.sort(), ['/healthz', '/readyz']);
    for (const path of probes) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 200, `${path}: ${await res.text()}`);
    }
  } finally {
    await rep.stop();
  }
});
