// The files under deploy/, parsed: the Grafana dashboard's queries, the Prometheus rules, the
// Kubernetes manifests, and the pg2crate metric names the queries and rules use.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse } from 'yaml';
import { parser as promql } from '@prometheus-io/lezer-promql';

export const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url));

export interface DashboardPanel {
  title: string;
  type: string;
  targets: { expr: string; refId: string }[];
}

export function dashboard(): { title: string; uid: string; panels: DashboardPanel[] } {
  return JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'pg2crate-dashboard.json'), 'utf8'));
}

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function alertRules(): AlertRule[] {
  const doc = parse(readFileSync(join(DEPLOY, 'prometheus', 'pg2crate-alerts.yaml'), 'utf8')) as { groups: { name: string; rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

/** Every object of every YAML document under deploy/kubernetes/, with the file it came from. */
export function kubernetesObjects(): { file: string; object: Record<string, any> }[] {
  const dir = join(DEPLOY, 'kubernetes');
  return readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort().flatMap((file) =>
    parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((d) => {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0].message}`);
      return { file, object: d.toJS() as Record<string, any> };
    }));
}

/** The pg2crate_… metric names a PromQL expression reads. */
export function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bpg2crate_[a-z0-9_]+\b/g)].map((m) => m[0]);
}

/** Every PromQL expression under deploy/ with where it is. */
export function deployQueries(): { where: string; expr: string }[] {
  return [
    ...dashboard().panels.flatMap((p) => p.targets.map((t) => ({ where: `dashboard panel "${p.title}" ${t.refId}`, expr: t.expr }))),
    ...alertRules().map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
  ];
}

/**
 * Where PromQL's own grammar (the Prometheus project's lezer parser, as in its web UI) finds a syntax
 * error in `expr`, as "offset: text"; empty when it parses. Grafana's $__rate_interval is
 * substituted first, as Grafana does before it sends the query.
 */
export function promqlErrors(expr: string): string[] {
  const text = expr.replaceAll('$__rate_interval', '5m');
  const errors: string[] = [];
  promql.parse(text).iterate({ enter: (n) => { if (n.type.isError) errors.push(`${n.from}: ${JSON.stringify(text.slice(Math.max(0, n.from - 10), n.to + 10))}`); } });
  return errors;
}
