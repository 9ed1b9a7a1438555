// The CrateDB client, bulk writer and sink against a local HTTP server that answers the way
// CrateDB does (shapes seen on a real 6.4.3). This server tests error handling only; the values
// and statements themselves are tested against a real CrateDB in test/cratedb.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import type { Change, ColumnInfo, TableInfo } from '../../src/core/change.js';
import { classify, TableError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { chunkRows, writeBulk, type BulkItem } from '../../src/sink/cratedb/bulk-writer.js';
import { CrateClient, CrateRequestError } from '../../src/sink/cratedb/crate-client.js';
import { bulkBody, ParamRows } from '../../src/sink/cratedb/param-rows.js';
import { CrateSink } from '../../src/sink/cratedb/cratedb-sink.js';
import { LosslessNumber } from 'lossless-json';

interface Received {
  method: string;
  headers: IncomingHttpHeaders;
  stmt?: string;
  args?: unknown[];
  bulkArgs?: unknown[][];
  bytes: number;
}

type Answer = { status: number; body: unknown } | { status: number; text: string } | 'destroy' | 'hang';

let server: Server;
let url: string;
let handler: (r: Received) => Answer | Promise<Answer>;
let received: Received[] = [];
/** GET / (the client checks a node with it before use, and asks it for the version): answered by rootHandler, kept apart from `received` */
let probes: Received[] = [];
const CRATE_ROOT: Answer = { status: 200, body: { ok: true, status: 200, name: 'n1', version: { number: '6.4.3' } } };
let rootHandler: (r: Received) => Answer = () => CRATE_ROOT;
const sockets = new Set<Socket>();
const PASSWORD = 's3cr3t-Pa55';

before(async () => {
  server = createServer((req, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const body = raw ? JSON.parse(raw) : {};
      const r: Received = { method: req.method ?? '', headers: req.headers, stmt: body.stmt, args: body.args, bulkArgs: body.bulk_args, bytes: Buffer.byteLength(raw) };
      (r.method === 'GET' ? probes : received).push(r);
      const a = r.method === 'GET' ? rootHandler(r) : await handler(r);
      if (a === 'destroy') { req.socket.destroy(); return; }
      if (a === 'hang') return;
      const text = 'text' in a ? a.text : JSON.stringify(a.body);
      res.writeHead(a.status, { 'content-type': 'application/json' });
      res.end(text);
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => server.close(r));
});

beforeEach(() => {
  received = [];
  probes = [];
  rootHandler = () => CRATE_ROOT;
});

const client = (timeoutMs = 5_000) => new CrateClient({ url, username: 'writer', password: PASSWORD, timeoutMs });
const ok = (results: unknown[]): Answer => ({ status: 200, body: { cols: [], duration: 1, results } });
const crateError = (status: number, code: number, message: string): Answer => ({ status, body: { error: { code, message } } });

function changes(n: number): Change[] {
  return Array.from({ length: n }, (_, i) => ({ id: i + 1, tableId: 1, op: 'I', key: String(i + 1), row: { id: i + 1 }, raw: `{"id": ${i + 1}}` }));
}
function items(cs: Change[], value = (c: Change) => `[${c.id},"v${c.id}"]`): BulkItem[] {
  const rows = new ParamRows(16);
  return cs.map((c) => ({ change: c, ...rows.row(value(c)) }));
}
const argsOf = (item: BulkItem) => item.rows.toString(item.start, item.end);
const LIMITS = { maxRows: 1000, maxBytes: 1 << 20 };

async function thrown(p: Promise<unknown>): Promise<CrateRequestError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CrateRequestError, `expected a CrateRequestError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the request to fail');
}

function assertNoPassword(err: Error): void {
  for (const text of [err.message, String(err), err.stack ?? '', JSON.stringify(err), String((err as { cause?: unknown }).cause ?? '')]) {
    assert.ok(!text.includes(PASSWORD), `the password leaked into: ${text}`);
    assert.ok(!text.includes(Buffer.from(`writer:${PASSWORD}`).toString('base64')), 'the Authorization header leaked');
  }
}

describe('per-row answers', () => {
  test('a row answered -2 is rejected with its code and message; rows answered 1 are applied', async () => {
    handler = () => ok([
      { rowcount: 1 },
      { rowcount: -2, error: { code: 4091, message: 'DuplicateKeyException[A document with the same primary key exists already]' } },
      { rowcount: -2, error: { code: 4000, message: 'SQLParseException[Value 9223372036854775807 exceeds allowed range for column of type bigint]' } },
      { rowcount: 1 },
    ]);
    const c = client();
    const cs = changes(4);
    const out = await writeBulk(c, 'INSERT …', items(cs), 'upsert', LIMITS);
    c.close();
    assert.equal(out.applied, 2);
    assert.deepEqual(out.rejected.map((r) => [r.change.id, r.code]), [[2, '4091'], [3, '4000']]);
    assert.match(out.rejected[1].message, /exceeds allowed range/);
    assert.equal(received.length, 1);
  });

  test('rows answered -2 without a reason (CrateDB names only the first few dozen) are sent again in smaller requests until each has one', async () => {
    // As CrateDB 6.4.3 answers a bulk delete of keys that are gone: the reason for the first 5 rows only.
    handler = (r) => ok(r.bulkArgs!.map((_, i) => i < 5 ? { rowcount: -2, error: { code: 40411, message: 'DocumentMissingException[[t][1]: document missing]' } } : { rowcount: -2 }));
    const c = client();
    const out = await writeBulk(c, 'DELETE …', items(changes(100)), 'delete', LIMITS);
    assert.equal(out.applied, 100);
    assert.deepEqual(out.rejected, []);
    assert.ok(received.every((r) => r.bulkArgs!.length <= 100));
    assert.equal(received.reduce((n, r) => n + Math.min(5, r.bulkArgs!.length), 0), 100, 'each row was answered with a reason exactly once');
    // an upsert whose row a concurrent delete removed mid-way is tried again, not parked
    received = [];
    handler = () => ok([{ rowcount: 1 }, { rowcount: -2, error: { code: 40411, message: 'DocumentMissingException[[t][1]: document missing]' } }]);
    const err = await thrown(writeBulk(c, 'INSERT …', items(changes(2)), 'upsert', LIMITS));
    assert.equal(classify(err), 'retryable');
    c.close();
  });

  test('a delete answered "document missing" (40411) or 0 is applied: the row is gone either way', async () => {
    handler = () => ok([
      { rowcount: -2, error: { code: 40411, message: 'DocumentMissingException[[t][1]: document missing]' } },
      { rowcount: 1 },
      { rowcount: 0 },
      { rowcount: -2, error: { code: 4000, message: 'SQLParseException[Cannot cast value `x` to type `bigint`]' } },
    ]);
    const c = client();
    const out = await writeBulk(c, 'DELETE …', items(changes(4)), 'delete', LIMITS);
    c.close();
    assert.equal(out.applied, 3);
    assert.deepEqual(out.rejected.map((r) => [r.change.id, r.code]), [[4, '4000']]);
  });

  test('a row refused because the cluster is busy or a shard is away fails the statement as retryable instead of being parked', async () => {
    const c = client();
    for (const error of [
      { code: 5000, message: 'EsRejectedExecutionException[rejected execution of org.elasticsearch… on EsThreadPoolExecutor[name = n/write, queue capacity = 200]]' },
      { code: 5002, message: 'UnavailableShardsException[[t][2] primary shard is not active]' },
      { code: 4290, message: 'CircuitBreakingException[[parent] Data too large]' },
    ]) {
      handler = () => ok([{ rowcount: 1 }, { rowcount: -2, error }]);
      const err = await thrown(writeBulk(c, 'INSERT …', items(changes(2)), 'upsert', LIMITS));
      assert.equal(classify(err), 'retryable', error.message);
    }
    // a 5000 for a value (seen on CrateDB 6.4 for an integer past 2^63 in an OBJECT) is the row's own
    handler = () => ok([{ rowcount: -2, error: { code: 5000, message: 'UncheckedIOException[java.io.IOException: can not write type [class java.math.BigInteger]]' } }]);
    assert.equal((await writeBulk(c, 'INSERT …', items(changes(1)), 'upsert', LIMITS)).rejected.length, 1);
    c.close();
  });

  test('an update of some columns of a row that is not there is applied, as the Postgres sink does: a later change deleted it', async () => {
    handler = () => ok([{ rowcount: 1 }, { rowcount: -2, error: { code: 40411, message: 'DocumentMissingException[[999]: document missing]' } }]);
    const c = client();
    const out = await writeBulk(c, 'UPDATE …', items(changes(2)), 'update', LIMITS);
    c.close();
    assert.equal(out.applied, 2);
    assert.deepEqual(out.rejected, []);
  });

  test('an upsert answered 0, -2 without a reason or too few results is never counted as applied', async () => {
    handler = (r) => ok(r.bulkArgs!.length === 3 ? [{ rowcount: 0 }, { rowcount: -2 }, { rowcount: -1 }] : [{ rowcount: -2 }]);
    const c = client();
    const out = await writeBulk(c, 'INSERT …', items(changes(3)), 'upsert', LIMITS);
    assert.equal(out.applied, 0);
    assert.equal(out.rejected.length, 3);
    assert.equal(received.length, 2, 'the row without a reason is asked about once more, alone');
    // DO NOTHING answers 0 for a key that is already there
    handler = () => ok([{ rowcount: 0 }]);
    const quiet = await writeBulk(c, 'INSERT …', items(changes(1)), 'upsert-do-nothing', LIMITS);
    assert.equal(quiet.applied, 1);
    handler = () => ok([{ rowcount: 1 }]);
    const err = await thrown(writeBulk(c, 'INSERT …', items(changes(2)), 'upsert', LIMITS));
    assert.match(err.message, /1 results for a bulk request of 2 rows/);
    assert.equal(classify(err), 'fatal');
    c.close();
  });
});

describe('a request that fails as a whole on a value', () => {
  test('is split until the rows at fault stand alone: those are rejected, every other row applied once', async () => {
    const applied: number[] = [];
    handler = (r) => {
      const rows = r.bulkArgs ?? [];
      const bad = rows.find((a) => a[1] === 'bad');
      if (bad) return crateError(400, 4000, `SQLParseException[Cannot cast value \`${String(bad[1])}\` to type \`integer\`]`);
      for (const a of rows) applied.push(a[0] as number);
      return ok(rows.map(() => ({ rowcount: 1 })));
    };
    const cs = changes(16);
    const c = client();
    const out = await writeBulk(c, 'INSERT …', items(cs, (ch) => `[${ch.id},"${ch.id === 5 || ch.id === 12 ? 'bad' : 'good'}"]`), 'upsert', LIMITS);
    c.close();
    assert.deepEqual(applied.sort((a, b) => a - b), [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16]);
    assert.deepEqual(out.rejected.map((r) => [r.change.id, r.code]), [[5, '4000'], [12, '4000']]);
    assert.match(out.rejected[0].message, /Cannot cast value `bad`/);
    assert.equal(out.applied, 14);
    assert.ok(out.splits > 0 && out.requests <= 1 + 2 * 2 * Math.log2(16), `requests: ${out.requests}`);
  });

  test('a NULL key or an out-of-range value alone in its request is rejected, not thrown', async () => {
    handler = () => crateError(400, 4000, 'SQLParseException[A primary key value must not be NULL]');
    const c = client();
    const out = await writeBulk(c, 'INSERT …', items(changes(1)), 'upsert', LIMITS);
    c.close();
    assert.equal(out.rejected.length, 1);
    assert.equal(out.applied, 0);
  });

  test('a syntax error is about the statement: it is thrown, not split row by row', async () => {
    handler = () => crateError(400, 4000, "ParsingException[line 1:26: extraneous input 'VALUE' expecting {'SELECT', 'WITH', 'VALUES', '('}]");
    const c = client();
    const err = await thrown(writeBulk(c, 'INSERT …', items(changes(8)), 'upsert', LIMITS));
    assert.equal(received.length, 1);
    assert.match(err.message, /ParsingException/);
    handler = () => crateError(400, 4003, 'ColumnValidationException[Validation failed for id: Updating a primary key is not supported]');
    await thrown(writeBulk(c, 'INSERT …', items(changes(8)), 'upsert', LIMITS));
    assert.equal(received.length, 2);
    c.close();
  });

  test('value errors of a bulk request never reach the error message (CrateDB quotes values), only the dead letters', async () => {
    handler = () => crateError(500, 5000, 'SomeException[value secret-customer-value]');
    const c = client();
    const err = await thrown(c.bulk('INSERT …', ['[1]']));
    c.close();
    assert.doesNotMatch(err.message, /secret-customer-value/);
    assert.match(err.message, /SomeException/);
    assert.match(err.crateMessage ?? '', /secret-customer-value/);
    assert.equal(classify(err), 'retryable');
  });
});

describe('request bounds', () => {
  test('a bulk body written into a buffer is byte for byte the JSON of the statement and its rows, multi-byte text included', () => {
    const stmt = 'INSERT INTO "tä"."t" ("a", "b") VALUES (?, ?)';
    for (const rows of [[], ['[1,"x"]'], ['[1,"é\\"q"]', '[2,"日本語 😀"]', '[3,null]']]) {
      const buffer = new ParamRows(4);
      const body = bulkBody(stmt, rows.map((r) => buffer.row(r)));
      assert.equal(body.toString('utf8'), `{"stmt":${JSON.stringify(stmt)},"bulk_args":[${rows.join(',')}]}`);
      assert.deepEqual(JSON.parse(body.toString('utf8')).bulk_args, rows.map((r) => JSON.parse(r)));
    }
  });

  test('no request holds more than maxRows rows or maxBytes bytes, and every row is sent once', async () => {
    const seen: number[] = [];
    handler = (r) => {
      for (const a of r.bulkArgs ?? []) seen.push(a[0] as number);
      return ok((r.bulkArgs ?? []).map(() => ({ rowcount: 1 })));
    };
    const cs = changes(100);
    const c = client();
    const value = (ch: Change) => `[${ch.id},"${'x'.repeat(ch.id * 10)}"]`;
    const out = await writeBulk(c, 'INSERT INTO t (id, v) VALUES (?, ?)', items(cs, value), 'upsert', { maxRows: 7, maxBytes: 4096 });
    c.close();
    assert.equal(out.applied, 100);
    assert.deepEqual(seen, cs.map((ch) => ch.id));
    for (const r of received) {
      assert.ok((r.bulkArgs?.length ?? 0) <= 7, `${r.bulkArgs?.length} rows in one request`);
      assert.ok(r.bytes <= 4096 || r.bulkArgs?.length === 1, `${r.bytes} bytes in one request of ${r.bulkArgs?.length} rows`);
    }
    // several requests in flight: still every row once, and the split still isolates a bad row
    received = [];
    seen.length = 0;
    handler = (r) => {
      const rows = r.bulkArgs ?? [];
      if (rows.some((a) => a[0] === 42)) return crateError(400, 4000, 'SQLParseException[Cannot cast value `42`]');
      for (const a of rows) seen.push(a[0] as number);
      return ok(rows.map(() => ({ rowcount: 1 })));
    };
    const c2 = client();
    const par = await writeBulk(c2, 'INSERT …', items(cs), 'upsert', { maxRows: 7, maxBytes: 1 << 20, parallel: 3 });
    assert.equal(par.applied, 99);
    assert.deepEqual(par.rejected.map((r) => r.change.id), [42]);
    assert.deepEqual(seen.sort((a, b) => a - b), cs.map((ch) => ch.id).filter((id) => id !== 42));
    // one request that fails for a retryable reason fails the statement, after the others in flight
    handler = (r) => ((r.bulkArgs ?? []).some((a) => a[0] === 50) ? { status: 503, text: 'busy' } : ok((r.bulkArgs ?? []).map(() => ({ rowcount: 1 }))));
    const err = await thrown(writeBulk(c2, 'INSERT …', items(cs), 'upsert', { maxRows: 7, maxBytes: 1 << 20, parallel: 3 }));
    assert.equal(classify(err), 'retryable');
    c2.close();
    // requests cut by rows are of equal size, so the last one does not run alone for long
    assert.deepEqual(chunkRows('S', items(changes(5000)), { maxRows: 2000, maxBytes: 1 << 30 }).map((ch) => ch.length), [1667, 1667, 1666]);
    assert.deepEqual(chunkRows('S', items(changes(4000)), { maxRows: 2000, maxBytes: 1 << 30 }).map((ch) => ch.length), [2000, 2000]);
    // cut by exact UTF-8 bytes, as if every row were measured, though most are not
    const texts = ['"a"', '"ü"', '"€€"', '"𝄞"', '"plain ascii text"', `"${'ж'.repeat(40)}"`];
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const mixed = items(changes(3000), () => `[${Array.from({ length: 1 + Math.floor(random() * 6) }, () => texts[Math.floor(random() * texts.length)]).join(',')}]`);
    for (const limits of [{ maxRows: 500, maxBytes: 2048 }, { maxRows: 64, maxBytes: 1 << 20 }, { maxRows: 3000, maxBytes: 9000 }]) {
      const envelope = Buffer.byteLength('{"stmt":"S","bulk_args":[]}');
      const want: number[] = [];
      let [n, bytes] = [0, envelope];
      const rows = Math.ceil(mixed.length / Math.ceil(mixed.length / limits.maxRows));
      for (const item of mixed) {
        const b = Buffer.byteLength(argsOf(item)) + 1;
        if (n > 0 && (n >= rows || bytes + b > limits.maxBytes)) [want[want.length], n, bytes] = [n, 0, envelope];
        n++;
        bytes += b;
      }
      want.push(n);
      assert.deepEqual(chunkRows('S', mixed, limits).map((ch) => ch.length), want, JSON.stringify(limits));
    }
    // a row larger than the byte bound goes alone
    const huge = chunkRows('S', items(changes(3), (ch) => `["${'y'.repeat(ch.id === 2 ? 10_000 : 10)}"]`), { maxRows: 10, maxBytes: 1024 });
    assert.deepEqual(huge.map((ch) => ch.map((i) => i.change.id)), [[1], [2], [3]]);
  });
});

describe('whole-request failures that a retry may cure, and credentials', () => {
  test('HTTP 503, with or without a CrateDB body, is retryable', async () => {
    const c = client();
    handler = () => ({ status: 503, text: '<html>Service Unavailable</html>' });
    const plain = await thrown(c.bulk('INSERT …', ['[1]']));
    assert.equal(plain.code, '5030');
    assert.equal(classify(plain), 'retryable');
    handler = () => crateError(503, 5030, 'ClusterBlockException[blocked by: [SERVICE_UNAVAILABLE/2/no master]]');
    assert.equal(classify(await thrown(c.sql('SELECT 1'))), 'retryable');
    handler = () => crateError(500, 5002, 'UnavailableShardsException[[t][0] primary shard is not active]');
    assert.equal(classify(await thrown(c.bulk('INSERT …', ['[1]']))), 'retryable');
    c.close();
  });

  test('no answer within the deadline is retryable', async () => {
    handler = () => 'hang';
    const c = client(200);
    const started = Date.now();
    const err = await thrown(c.bulk('INSERT …', ['[1]']));
    c.close();
    assert.equal(err.code, 'ETIMEDOUT');
    assert.equal(classify(err), 'retryable');
    assert.ok(Date.now() - started < 3_000);
    assertNoPassword(err);
    for (const s of sockets) s.destroy();
  });

  test('a kept-alive connection the server closed while idle is replaced without failing the request', async () => {
    const c = client();
    handler = () => ok([{ rowcount: 1 }]);
    await c.bulk('INSERT …', ['[1]']);
    // the next request goes out on the kept-alive socket, which the server resets without answering
    let resets = 0;
    handler = () => (resets++ === 0 ? 'destroy' : ok([{ rowcount: 1 }]));
    assert.deepEqual(await c.bulk('INSERT …', ['[1]']), [{ rowcount: 1 }]);
    assert.equal(resets, 2);
    c.close();
  });

  test('a connection reset is retryable', async () => {
    handler = () => 'destroy';
    const c = client();
    const err = await thrown(c.bulk('INSERT …', ['[1]']));
    c.close();
    assert.equal(classify(err), 'retryable');
    assert.match(String(err.code), /^(ECONNRESET|EPIPE|UND_ERR_SOCKET)$/);
    assertNoPassword(err);
  });

  test('a refused connection is retryable and names the server without credentials', async () => {
    const c = new CrateClient({ url: 'http://127.0.0.1:1', username: 'writer', password: PASSWORD, timeoutMs: 2_000 });
    const err = await thrown(c.sql('SELECT 1'));
    c.close();
    assert.equal(classify(err), 'retryable');
    assertNoPassword(err);
  });

  test('every request carries basic auth; a refusal of the credentials is fatal and never shows the password', async () => {
    handler = () => crateError(401, 4010, 'AuthenticationException[trust authentication failed for user "writer"]');
    const c = client();
    const err = await thrown(c.sql('SELECT 1'));
    await thrown(c.bulk('INSERT …', ['[1]']));
    c.close();
    for (const r of [...probes, ...received]) assert.equal(r.headers.authorization, `Basic ${Buffer.from(`writer:${PASSWORD}`).toString('base64')}`);
    assert.equal(classify(err), 'fatal');
    assertNoPassword(err);
    assert.throws(() => new CrateClient({ url: `http://writer:${PASSWORD}@127.0.0.1:4200`, username: 'w', timeoutMs: 1 }), (e: Error) => !e.message.includes(PASSWORD));
  });

  test('an https URL speaks TLS: a server whose certificate is not trusted is refused, never spoken to in clear text', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'pg2crate-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    } catch {
      t.skip('openssl is not installed: cannot make a certificate');
      return;
    }
    let clearText = 0;
    const tls = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (_req, res) => { clearText++; res.end('{}'); });
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    const c = new CrateClient({ url: `https://127.0.0.1:${(tls.address() as { port: number }).port}`, username: 'writer', password: PASSWORD, timeoutMs: 5_000 });
    try {
      const err = await thrown(c.sql('SELECT 1'));
      assert.match(String(err.code), /CERT|SELF_SIGNED/);
      assert.equal(classify(err), 'fatal');
      assert.equal(clearText, 0);
      assertNoPassword(err);
    } finally {
      c.close();
      tls.closeAllConnections();
      await new Promise((r) => tls.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('answers are parsed without rounding big numbers', async () => {
    handler = () => ({ status: 200, text: '{"cols":["o","b"],"rows":[[{"big":123456789012345678901234567890},"9007199254740993"]],"rowcount":1}' });
    const c = client();
    const res = await c.sql('SELECT o, b::TEXT FROM t');
    c.close();
    const big = (res.rows[0][0] as { big: unknown }).big;
    assert.ok(big instanceof LosslessNumber);
    assert.equal(String(big), '123456789012345678901234567890');
  });
});

describe('the sink when the target table changed under it', () => {
  const columns: ColumnInfo[] = [
    { name: 'id', type: 'bigint', baseType: 'int8', baseFormatted: 'bigint', dims: 0, typtype: 'b', notNull: true },
    { name: 'v', type: 'text', baseType: 'text', baseFormatted: 'text', dims: 0, typtype: 'b', notNull: false },
  ];
  const info: TableInfo = { id: 1, relid: 1, sourceSchema: 'public', sourceTable: 't', targetSchema: 'doc', targetTable: 't', keyColumns: ['id'], columns };
  const config = { kind: 'cratedb' as const, urls: [] as string[], username: 'writer', password: PASSWORD };
  const opts = { maxRequestRows: 100, maxRequestBytes: 1 << 20, requestsInFlight: 2, requestTimeoutMs: 5_000, replicas: '0-1', refreshIntervalMs: 500, jsonColumn: 'object-ignored' as const, textColumn: 'plain' as const };

  function crate(opts2: { tableExists: () => boolean; insert: () => Answer }): (r: Received) => Answer {
    return (r) => {
      if (r.method === 'GET') return { status: 200, body: { ok: true, version: { number: '6.4.3' } } };
      const s = r.stmt ?? '';
      if (s.includes('information_schema.tables')) return { status: 200, body: { cols: [], rows: opts2.tableExists() ? [['_id', null]] : [], rowcount: 1 } };
      if (s.includes('information_schema.columns')) return { status: 200, body: { cols: [], rows: [['id', 'bigint'], ['v', 'text']], rowcount: 2 } };
      if (s.includes('key_column_usage')) return { status: 200, body: { cols: [], rows: [['id']], rowcount: 1 } };
      if (s.startsWith('CREATE TABLE')) return { status: 200, body: { cols: [], rows: [], rowcount: 1 } };
      if (s.startsWith('INSERT')) return opts2.insert();
      return crateError(400, 4000, `unexpected statement ${s}`);
    };
  }

  async function applyOnce(): Promise<unknown> {
    const sink = new CrateSink({ ...config, urls: [url] }, opts, createLogger('silent'));
    try {
      await sink.start();
      await sink.prepare(info);
      const upserts: Change[] = [{ id: 1, tableId: 1, op: 'I', key: '1', row: { id: 1, v: 'a' }, raw: '{"id": 1, "v": "a"}' }];
      await sink.apply([{ table: info, truncate: false, deletes: [], upserts }]);
      return null;
    } catch (err) {
      return err;
    } finally {
      await sink.stop();
    }
  }

  const statements = () => received.map((r) => (r.method === 'GET' ? 'GET /' : r.stmt ?? ''));

  test('an unknown column re-reads the columns once, retries once, then stops the table with a clear message', async () => {
    handler = crate({ tableExists: () => true, insert: () => crateError(404, 4043, 'ColumnUnknownException[Column v unknown]') });
    const err = await applyOnce();
    assert.ok(err instanceof TableError, String(err));
    assert.equal(classify(err), 'fatal');
    assert.match(err.message, /"doc"\."t"|doc\.t/);
    assert.match(err.message, /Column v unknown/);
    const s = statements();
    assert.equal(s.filter((x) => x.startsWith('INSERT')).length, 2);
    const firstInsert = s.findIndex((x) => x.startsWith('INSERT'));
    assert.ok(s.slice(firstInsert).some((x) => x.includes('information_schema.columns')), `no re-read after the failure: ${s.join(' | ')}`);
  });

  test('an unknown table is created again after the re-read; if it still fails the table stops', async () => {
    let inserts = 0;
    const base = crate({ tableExists: () => inserts === 0 || created, insert: () => { inserts++; return crateError(404, 4041, 'RelationUnknown[Relation \'doc.t\' unknown]'); } });
    let created = false;
    handler = (r) => {
      if (r.stmt?.startsWith('CREATE TABLE')) created = true;
      return base(r);
    };
    const err = await applyOnce();
    assert.ok(err instanceof TableError, String(err));
    assert.equal(inserts, 2);
    assert.ok(statements().some((x) => x.startsWith('CREATE TABLE')), 'the table was not created again');
  });

  test('after the re-read a retry that succeeds applies the rows', async () => {
    let inserts = 0;
    handler = crate({ tableExists: () => true, insert: () => (++inserts === 1 ? crateError(404, 4043, 'ColumnUnknownException[Column v unknown]') : ok([{ rowcount: 1 }])) });
    assert.equal(await applyOnce(), null);
    assert.equal(inserts, 2);
  });
});

describe('requests in flight for one page', () => {
  const columns: ColumnInfo[] = [
    { name: 'id', type: 'bigint', baseType: 'int8', baseFormatted: 'bigint', dims: 0, typtype: 'b', notNull: true },
    { name: 'v', type: 'text', baseType: 'text', baseFormatted: 'text', dims: 0, typtype: 'b', notNull: false },
  ];
  const table = (id: number, name: string): TableInfo => ({ id, relid: id, sourceSchema: 'public', sourceTable: name, targetSchema: 'doc', targetTable: name, keyColumns: ['id'], columns });

  test('the tables and statements of a page share one bound on requests in flight, and use all of it', async () => {
    let inFlight = 0;
    let most = 0;
    const kinds = new Set<string>();
    handler = async (r) => {
      const s = r.stmt ?? '';
      if (s.includes('information_schema.tables')) return { status: 200, body: { cols: [], rows: [['_id', null]], rowcount: 1 } };
      if (s.includes('information_schema.columns')) return { status: 200, body: { cols: [], rows: [['id', 'bigint'], ['v', 'text']], rowcount: 2 } };
      if (s.includes('key_column_usage')) return { status: 200, body: { cols: [], rows: [['id']], rowcount: 1 } };
      inFlight++;
      most = Math.max(most, inFlight);
      kinds.add(s.split(' ')[0]);
      await new Promise((resolve) => setTimeout(resolve, 15));
      inFlight--;
      return ok((r.bulkArgs ?? []).map(() => ({ rowcount: 1 })));
    };
    const opts = { maxRequestRows: 10, maxRequestBytes: 1 << 20, requestsInFlight: 3, requestTimeoutMs: 5_000, replicas: '0-1', refreshIntervalMs: 500, jsonColumn: 'object-ignored' as const, textColumn: 'plain' as const };
    const sink = new CrateSink({ kind: 'cratedb', urls: [url], username: 'writer', password: PASSWORD }, opts, createLogger('silent'));
    try {
      const [a, b] = [table(1, 'a'), table(2, 'b')];
      await sink.prepare(a);
      await sink.prepare(b);
      const rows = (tableId: number, from: number, op: 'I' | 'D'): Change[] => Array.from({ length: 40 }, (_, i) => {
        const id = from + i;
        const change: Change = { id, tableId, op, key: String(id), row: { id }, raw: `{"id": ${id}}` };
        if (op === 'I') Object.assign(change, { row: { id, v: 'x' }, raw: `{"id": ${id}, "v": "x"}` });
        return change;
      });
      // deletes and upserts of two tables: 16 requests of 10 rows
      const { rejected } = await sink.apply([
        { table: a, truncate: false, deletes: rows(1, 1, 'D'), upserts: rows(1, 100, 'I') },
        { table: b, truncate: false, deletes: rows(2, 1, 'D'), upserts: rows(2, 100, 'I') },
      ]);
      assert.equal(rejected.length, 0);
      assert.equal(most, 3, 'requests in flight at most, over both tables and both statements');
      assert.deepEqual([...kinds].sort(), ['DELETE', 'INSERT']);
    } finally {
      await sink.stop();
    }
  });
});
