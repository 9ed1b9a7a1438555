// CrateDB's raw ingest rate, for the scenarios that put pg2crate beside it (backfill, drain): plain
// INSERT … VALUES with bulk_args over HTTP, no conversion, no conflict handling, no checks.
export interface CrateAnswer {
  rows?: unknown[][];
  results?: { rowcount: number }[];
}

/** One statement over HTTP /_sql (with bulk_args when given); throws CrateDB's message on an error. */
export async function crateSql(url: string, stmt: string, bulkArgs?: unknown[][]): Promise<CrateAnswer> {
  const res = await fetch(`${url}/_sql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(bulkArgs ? { stmt, bulk_args: bulkArgs } : { stmt }) });
  const body = (await res.json()) as CrateAnswer & { error?: { message: string } };
  if (!res.ok) throw new Error(`CrateDB: ${body.error?.message ?? res.status}`);
  return body;
}

/**
 * Seconds to insert `data` (rows as value arrays in `columns` order) into a fresh copy of
 * `"schema"."table"` (the DDL pg2crate made), `requestRows` per request, `parallel` in flight.
 * The copy is dropped afterwards.
 */
export async function rawInsertSeconds(url: string, schema: string, table: string, columns: string[], data: unknown[][], requestRows: number, parallel: number): Promise<number> {
  let next = 0;
  return rawInsertFromSeconds(url, schema, table, columns, parallel, async () => {
    const from = next;
    next += requestRows;
    return from < data.length ? data.slice(from, from + requestRows).map((r) => JSON.stringify(r)) : null;
  });
}

/**
 * The same, with the rows given by `next` as parameter rows of JSON text (null when there are no
 * more), asked for as the requests go: a source read beside the writes is timed with them.
 */
export async function rawInsertFromSeconds(
  url: string, schema: string, table: string, columns: string[], parallel: number, next: () => Promise<string[] | null>,
): Promise<number> {
  const raw = `"${schema}"."${table}_raw"`;
  await crateSql(url, `drop table if exists ${raw}`);
  const ddl = (await crateSql(url, `show create table "${schema}"."${table}"`)).rows![0][0] as string;
  await crateSql(url, ddl.replace(`"${schema}"."${table}"`, raw));
  const stmt = JSON.stringify(`insert into ${raw} (${columns.map((c) => `"${c}"`).join(', ')}) values (${columns.map(() => '?').join(', ')})`);
  const start = performance.now();
  const worker = async () => {
    // Each worker asks for its next rows while its request is in flight.
    let rows = await next();
    while (rows !== null) {
      const ahead = next();
      ahead.catch(() => {});
      const res = await fetch(`${url}/_sql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"stmt":${stmt},"bulk_args":[${rows.join(',')}]}` });
      const body = (await res.json()) as CrateAnswer & { error?: { message: string } };
      if (!res.ok) throw new Error(`CrateDB: ${body.error?.message ?? res.status}`);
      if (!body.results || body.results.length !== rows.length || body.results.some((x) => x.rowcount !== 1)) throw new Error('raw insert: a row was refused');
      rows = await ahead;
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  const seconds = (performance.now() - start) / 1000;
  await crateSql(url, `drop table if exists ${raw}`);
  return seconds;
}
