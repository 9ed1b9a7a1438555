// Spreading requests over the nodes of a CrateDB cluster: the node pool on a fake clock, and the
// client against local HTTP servers that stand in for nodes that answer, refuse, hang, break a
// connection mid-request or are not in a cluster yet (GET / answers 503 with "ok": false, as a
// CrateDB 6.4.3 node does between opening its port and joining). The real proof is
// test/cratedb/cluster.test.ts, against three real nodes.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { classify } from '../../src/core/errors.js';
import { CrateNodes, NODE_BACKOFF, RECHECK_AFTER_MS } from '../../src/sink/cratedb/crate-nodes.js';
import { CrateClient, CrateRequestError } from '../../src/sink/cratedb/crate-client.js';

const PASSWORD = 'n0de-s3cret';

describe('the node pool', () => {
  const clock = () => {
    let t = 1_000_000;
    return { now: () => t, advance: (ms: number) => { t += ms; } };
  };
  const bases = (pool: CrateNodes) => pool.candidates().map((n) => n.base);

  test('requests go round-robin over the nodes', () => {
    const pool = new CrateNodes(['a', 'b', 'c'], clock());
    assert.deepEqual(bases(pool), ['a', 'b', 'c']);
    assert.deepEqual(bases(pool), ['b', 'c', 'a']);
    assert.deepEqual(bases(pool), ['c', 'a', 'b']);
    assert.deepEqual(bases(pool), ['a', 'b', 'c']);
  });

  test('a node that failed is left out until its back-off is over, then checked before use; the back-off doubles up to its bound', () => {
    const c = clock();
    const pool = new CrateNodes(['a', 'b', 'c'], c);
    const [, b] = pool.candidates();
    pool.answered(b);
    assert.equal(pool.needsCheck(b), false);
    assert.deepEqual(pool.setAside(b), { ms: NODE_BACKOFF.baseMs, failures: 1 });
    assert.equal(pool.needsCheck(b), true);
    for (let i = 0; i < 3; i++) assert.ok(!bases(pool).includes('b'));
    c.advance(NODE_BACKOFF.baseMs);
    assert.ok(bases(pool).includes('b'));
    const waits = Array.from({ length: 8 }, () => pool.setAside(b).ms);
    assert.deepEqual(waits, [1000, 2000, 4000, 8000, 10_000, 10_000, 10_000, 10_000].map((ms) => Math.min(ms, NODE_BACKOFF.maxMs)));
    assert.equal(pool.answered(b), true, 'back after failures');
    assert.equal(pool.answered(b), false);
    assert.equal(pool.setAside(b).ms, NODE_BACKOFF.baseMs, 'an answer resets the back-off');
  });

  test('when every node is set aside, all are tried anyway, the one due soonest first', () => {
    const c = clock();
    const pool = new CrateNodes(['a', 'b', 'c'], c);
    const [a, b, cc] = pool.candidates();
    pool.setAside(a);
    pool.setAside(a); // a: 1000 ms
    pool.setAside(b); // b: 500 ms
    pool.setAside(cc);
    pool.setAside(cc);
    pool.setAside(cc); // c: 2000 ms
    assert.deepEqual(bases(pool), ['b', 'a', 'c']);
    assert.deepEqual(pool.describe().map((n) => n.aside), [true, true, true]);
  });

  test('a node unused for a while is checked again before its next request', () => {
    const c = clock();
    const pool = new CrateNodes(['a'], c);
    const [a] = pool.candidates();
    assert.equal(pool.needsCheck(a), true, 'never checked');
    pool.answered(a);
    c.advance(RECHECK_AFTER_MS);
    assert.equal(pool.needsCheck(a), false);
    c.advance(1);
    assert.equal(pool.needsCheck(a), true);
  });
});

type Mode = 'ok' | 'joining' | 'hang' | 'break';

interface FakeNode {
  url: string;
  mode: Mode;
  /** statements received (POST /_sql) */
  statements: string[];
  /** GET / received */
  checks: number;
  close(): Promise<void>;
}

const servers: Server[] = [];
const sockets = new Set<Socket>();

after(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

/** A local HTTP server that answers as a CrateDB node in the given mode. */
async function fakeNode(name: string, mode: Mode = 'ok'): Promise<FakeNode> {
  const node: FakeNode = { url: '', mode, statements: [], checks: 0, close: async () => {} };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET') {
        node.checks++;
        const joined = node.mode !== 'joining';
        res.writeHead(joined ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: joined, status: joined ? 200 : 503, name, version: { number: '6.4.3' } }));
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { stmt: string };
      node.statements.push(body.stmt);
      if (node.mode === 'hang') return;
      if (node.mode === 'break') { req.socket.destroy(); return; }
      if (node.mode === 'joining') {
        // what a node that has not joined yet answers to a statement: the reason it must not get one
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 4045, message: "SchemaUnknownException[Schema 'doc' unknown]" } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ cols: ['node'], rows: [[name]], rowcount: 1 }));
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  node.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  node.close = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return node;
}

/** A URL where nothing listens: the port of a server that was closed. */
async function refusingUrl(): Promise<string> {
  const n = await fakeNode('gone');
  await n.close();
  return n.url;
}

function clientFor(urls: string[], timeoutMs = 5_000, now?: () => number): CrateClient {
  return new CrateClient({ url: urls, username: 'writer', password: PASSWORD, timeoutMs }, { now });
}

async function names(c: CrateClient, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(String((await c.sql('SELECT name FROM sys.nodes')).rows[0][0]));
  return out;
}

async function failure(p: Promise<unknown>): Promise<CrateRequestError> {
  let caught: unknown;
  await assert.rejects(p, (err) => (caught = err) instanceof CrateRequestError);
  return caught as CrateRequestError;
}

describe('the client over several nodes', () => {
  test('requests spread over the nodes, each checked once before its first statement', async () => {
    const [a, b, c] = await Promise.all([fakeNode('a'), fakeNode('b'), fakeNode('c')]);
    const client = clientFor([a.url, b.url, c.url]);
    assert.deepEqual(await names(client, 6), ['a', 'b', 'c', 'a', 'b', 'c']);
    assert.deepEqual([a.checks, b.checks, c.checks], [1, 1, 1]);
    client.close();
  });

  test('a node that refuses connections is set aside and no request fails for it', async () => {
    const [a, c] = await Promise.all([fakeNode('a'), fakeNode('c')]);
    const client = clientFor([a.url, await refusingUrl(), c.url]);
    const got = await names(client, 6);
    assert.deepEqual(new Set(got), new Set(['a', 'c']));
    assert.deepEqual(client.nodes().map((n) => n.aside), [false, true, false]);
    client.close();
  });

  test('a node that is up but not in a cluster yet gets no statement until its check passes', async () => {
    let t = 0;
    const [a, b] = await Promise.all([fakeNode('a'), fakeNode('b', 'joining')]);
    const client = clientFor([a.url, b.url], 5_000, () => t);
    assert.deepEqual(await names(client, 4), ['a', 'a', 'a', 'a']);
    assert.deepEqual(b.statements, [], 'the joining node must not answer a statement ("schema unknown")');
    assert.equal(b.checks, 1, 'set aside after its check: not asked again before its back-off is over');
    b.mode = 'ok';
    t += NODE_BACKOFF.baseMs;
    assert.deepEqual((await names(client, 4)).sort(), ['a', 'a', 'b', 'b']);
    client.close();
  });

  test('a request whose connection breaks mid-way is sent once to the next node (every request of the sink is idempotent)', async () => {
    const [a, b] = await Promise.all([fakeNode('a', 'break'), fakeNode('b')]);
    const client = clientFor([a.url, b.url]);
    assert.deepEqual(await names(client, 1), ['b']);
    // the first break looks like a kept-alive connection closed while idle: once more to a, on a new connection
    assert.ok(a.statements.length >= 1 && a.statements.length <= 2, `${a.statements.length} sends to the breaking node`);
    assert.equal(b.statements.length, 1);
    assert.deepEqual(client.nodes().map((n) => n.aside), [true, false]);
    client.close();
  });

  test('a request not answered in time is not sent to another node: it fails as retryable, and the next request goes elsewhere', async () => {
    const [a, b] = await Promise.all([fakeNode('a', 'hang'), fakeNode('b')]);
    const client = clientFor([a.url, b.url], 300);
    const err = await failure(client.sql('SELECT 1'));
    assert.equal(err.code, 'ETIMEDOUT');
    assert.equal(classify(err), 'retryable');
    assert.equal(b.statements.length, 0);
    assert.deepEqual(await names(client, 2), ['b', 'b']);
    client.close();
    for (const s of sockets) s.destroy();
  });

  test('when no node answers the request fails as retryable, without credentials, and the first node back serves at once', async () => {
    const [u1, u2] = [await refusingUrl(), await refusingUrl()];
    const client = clientFor([u1, u2]);
    const err = await failure(client.sql('SELECT 1'));
    assert.equal(classify(err), 'retryable');
    assert.match(err.message, /no CrateDB node answered/);
    assert.ok(err.message.includes(u1) && err.message.includes(u2), err.message);
    for (const text of [err.message, String(err.cause), JSON.stringify(err)]) assert.ok(!text.includes(PASSWORD));
    // both set aside; a node that comes back on the same port is tried although its back-off is not over
    const port = Number(new URL(u2).port);
    const back = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, cols: ['node'], rows: [['back']], rowcount: 1 }));
    });
    back.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
    await new Promise<void>((r) => back.listen(port, '127.0.0.1', r));
    servers.push(back);
    assert.deepEqual(await names(client, 2), ['back', 'back']);
    assert.deepEqual(client.nodes().map((n) => n.aside), [true, false]);
    client.close();
  });
});
