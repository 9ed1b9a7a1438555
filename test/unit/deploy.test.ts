// deploy/: the Grafana dashboard and the Prometheus alert rules read only metrics the replicator's
// registry has (checked here against the code's registry; test/integration/deploy-metrics.test.ts
// checks them against a real /metrics scrape), and the Kubernetes manifests run commands the CLI
// knows, probe routes the replicator serves, and hold to the least privileges the README names.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { MetricsServer } from '../../src/ops/metrics.js';
import type { StreamStatus } from '../../src/ops/status.js';
import type { DrainerStats } from '../../src/drain/drainer.js';
import { SETTINGS } from '../../src/core/settings.js';
import { CATALOG } from '../../src/commands/catalog.js';
import { parseCommandLine } from '../../src/commands/command-line.js';
import { createLogger } from '../../src/core/logger.js';
import { alertRules, dashboard, deployQueries, kubernetesObjects, metricNames, promqlErrors } from '../helpers/deploy-files.js';

const STATS: DrainerStats = { state: 'idle', appliedEvents: 5, appliedRows: 5, pages: 1, windows: 1, deadLetters: 0, errors: { retryable: 1 }, lastAppliedAt: new Date() };
const STATUS = {
  mode: 'pgoutput', slot: { name: 'pg2crate', active: true, activePid: 1, confirmedFlushLsn: '0/0', retainedBytes: 10, walStatus: 'reserved', warn: false },
  schema: 'pg2crate', stream: 'main', backlogEvents: 0, strandedEvents: 0, boundViolations: 0, appliedEvents: 5, windows: 1, lastAppliedAt: null,
  secondsSinceApplied: null, lagSeconds: 0, outboxBytes: 100, drainerPid: 1, idle: true, deadLetters: 0, tables: [],
} as unknown as StreamStatus;

const server = new MetricsServer({ drainer: () => STATS, status: async () => STATUS, pingTarget: async () => {}, readyMaxLagSeconds: 300 }, createLogger('silent'));
after(() => server.stop());

test('every metric the dashboard and the alert rules name is in the replicator\'s registry', async () => {
  const registered = new Set((await server.registry.getMetricsAsJSON()).map((m) => m.name));
  const unknown = deployQueries().flatMap((q) => metricNames(q.expr).filter((n) => !registered.has(n)).map((n) => `${q.where}: ${n}`));
  assert.deepEqual(unknown, []);
  // the check can fail: a name the registry lacks is reported
  assert.ok(!registered.has('pg2crate_lag_second'));
});

test('every query of the dashboard and the alert rules is valid PromQL', () => {
  const wrong = deployQueries().flatMap((q) => promqlErrors(q.expr).map((e) => `${q.where}: ${e}`));
  assert.deepEqual(wrong, []);
  assert.notDeepEqual(promqlErrors('sum(rate(pg2crate_pages_total[$__rate_interval])'), [], 'an unclosed parenthesis is found');
});

test('the dashboard shows lag, backlog, events and rows per second, errors by kind, dead letters, outbox size and slot WAL', () => {
  const d = dashboard();
  assert.equal(d.uid, 'pg2crate');
  const exprs = d.panels.flatMap((p) => p.targets.map((t) => t.expr));
  for (const [what, pattern] of Object.entries({
    lag: /pg2crate_lag_seconds/, backlog: /pg2crate_backlog_events/, 'events/s': /rate\(pg2crate_events_applied_total\[/,
    'rows/s': /rate\(pg2crate_rows_applied_total\[/, 'errors by kind': /by \(kind\) \(rate\(pg2crate_errors_total\[/,
    'dead letters': /pg2crate_dead_letters\b/, 'outbox size': /pg2crate_outbox_bytes/, 'slot WAL': /pg2crate_slot_retained_wal_bytes/,
  })) assert.ok(exprs.some((e) => pattern.test(e)), `no panel for ${what}`);
  const ids = d.panels.map((p) => (p as unknown as { id: number }).id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  for (const p of d.panels) assert.ok(p.targets.length > 0 && p.targets.every((t) => t.expr && t.refId), `panel ${p.title} has a query`);
});

test('the alert rules cover lag over a threshold, dead letters, the drainer down and the slot retaining too much WAL', () => {
  const rules = alertRules();
  for (const r of rules) {
    assert.ok(r.alert && r.expr && r.for, `${r.alert}: alert, expr and for`);
    assert.ok(['warning', 'critical'].includes(r.labels?.severity ?? ''), `${r.alert}: severity`);
    assert.ok(r.annotations?.summary && r.annotations?.description, `${r.alert}: summary and description`);
  }
  const has = (re: RegExp) => rules.some((r) => re.test(r.expr));
  assert.ok(has(/max\(pg2crate_lag_seconds\) > \d+/), 'lag over a threshold');
  assert.ok(has(/pg2crate_dead_letters\) > 0/), 'dead letters appearing');
  assert.ok(has(/absent\(pg2crate_drainer_state\{state=~"idle\|draining"\} == 1\)/), 'no drainer holding the stream');
  assert.ok(has(/pg2crate_slot_over_warn/), 'the slot retaining too much WAL');
});

const objects = kubernetesObjects();
const kinds = (k: string) => objects.filter((o) => o.object.kind === k);
const podOf = (o: Record<string, any>) => (o.kind === 'CronJob' ? o.spec.jobTemplate.spec.template.spec : o.spec.template.spec);
const SECRETS = ['DATABASE_URL', 'TARGET_DATABASE_URL', 'CRATEDB_URL', 'CRATEDB_USER', 'CRATEDB_PASSWORD', 'PG2CRATE_HASH_SALT', 'PGPASSWORD'];

test('Kubernetes: a Deployment of two replicas and a CronJob that runs catch-up', () => {
  assert.deepEqual(objects.map((o) => `${o.file}: ${o.object.kind}`), ['cronjob.yaml: CronJob', 'deployment.yaml: Deployment']);
  const [dep] = kinds('Deployment');
  assert.equal(dep.object.spec.replicas, 2);
  const [cron] = kinds('CronJob');
  assert.equal(cron.object.spec.concurrencyPolicy, 'Forbid', 'catch-ups must not overlap');
  assert.deepEqual(podOf(cron.object).containers.map((c: { args: string[] }) => c.args[0]), ['catch-up']);
  assert.deepEqual(podOf(dep.object).containers.map((c: { args: string[] }) => c.args[0]), ['start']);
});

test('Kubernetes: every container runs a command the CLI knows, with options it takes', () => {
  for (const { file, object } of objects) {
    const pod = podOf(object);
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      const line = parseCommandLine(c.args, CATALOG);
      assert.equal(line.kind, 'run', `${file} ${c.name}: ${c.args.join(' ')}`);
      assert.ok(line.kind === 'run' && !('standalone' in line.command), `${file} ${c.name}: not the demo`);
      assert.equal(c.command, undefined, `${file} ${c.name}: the image's entrypoint (node dist/cli.js) runs the command`);
    }
  }
  assert.throws(() => parseCommandLine(['catchup'], CATALOG), /did you mean "catch-up"/);
});

test('Kubernetes: every environment variable is a pg2crate setting, and secrets come only from a Secret', () => {
  const known = new Set(Object.values(SETTINGS).map((s) => s.env).filter((e) => e !== null));
  for (const { file, object } of objects) {
    for (const c of [...(podOf(object).initContainers ?? []), ...podOf(object).containers]) {
      assert.ok(c.envFrom?.some((e: { secretRef?: { name: string } }) => e.secretRef?.name), `${file} ${c.name}: envFrom a Secret`);
      for (const e of c.env ?? []) {
        assert.ok(known.has(e.name), `${file} ${c.name}: ${e.name} is no setting`);
        assert.ok(!SECRETS.includes(e.name) || e.valueFrom?.secretKeyRef, `${file} ${c.name}: ${e.name} must come from a Secret`);
      }
    }
  }
});

test('Kubernetes: non-root, read-only root filesystem, no privilege escalation or capabilities, no service account token', () => {
  for (const { file, object } of objects) {
    const pod = podOf(object);
    assert.equal(pod.automountServiceAccountToken, false, `${file}: no service account token`);
    assert.equal(pod.securityContext.runAsNonRoot, true, `${file}: runAsNonRoot`);
    assert.ok(pod.securityContext.runAsUser > 0, `${file}: a non-root uid`);
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      const sc = c.securityContext;
      assert.equal(sc.readOnlyRootFilesystem, true, `${file} ${c.name}: read-only root filesystem`);
      assert.equal(sc.allowPrivilegeEscalation, false, `${file} ${c.name}: no privilege escalation`);
      assert.deepEqual(sc.capabilities.drop, ['ALL'], `${file} ${c.name}: no capabilities`);
      assert.ok(c.resources?.limits?.memory, `${file} ${c.name}: a memory limit`);
    }
  }
});

test('Kubernetes: the probes ask /healthz and /readyz on the port the replicator serves, and it answers them', async () => {
  const [dep] = kinds('Deployment');
  const c = podOf(dep.object).containers[0];
  const httpPort = c.env.find((e: { name: string }) => e.name === 'PG2CRATE_HTTP_PORT')?.value;
  const port = c.ports.find((p: { name: string }) => p.name === c.livenessProbe.httpGet.port);
  assert.equal(String(port?.containerPort), httpPort, 'the probes\' port is PG2CRATE_HTTP_PORT');
  assert.equal(c.readinessProbe.httpGet.port, c.livenessProbe.httpGet.port);
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  const bound = await server.start(0);
  for (const path of [c.livenessProbe.httpGet.path, c.readinessProbe.httpGet.path, dep.object.spec.template.metadata.annotations['prometheus.io/path']]) {
    const res = await fetch(`http://127.0.0.1:${bound}${path}`);
    assert.equal(res.status, 200, `${path}: ${await res.text()}`);
  }
  assert.equal((await fetch(`http://127.0.0.1:${bound}/livez`)).status, 404, 'an unknown route is refused (the check can fail)');
  assert.equal(dep.object.spec.template.metadata.annotations['prometheus.io/port'], httpPort);
});
