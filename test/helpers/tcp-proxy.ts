// A loopback TCP proxy in front of a server (a Postgres target, CrateDB's HTTP port), for tests that
// take the server away without stopping it: `down()` resets every open connection and every new one
// until `up()`. The server itself never notices; the client sees what a failover or a dead network
// path looks like (ECONNRESET, "Connection terminated unexpectedly", "fetch failed").
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  /** the port the proxy listens on (127.0.0.1) */
  readonly port: number;
  readonly isDown: boolean;
  /** resets every open connection; new ones are reset at once until up() */
  down(): void;
  up(): void;
  /** the same URL with the proxy's host and port */
  rewrite(url: string): string;
  close(): Promise<void>;
}

/** Starts a proxy on a free loopback port forwarding to `host:port`. */
export async function startTcpProxy(host: string, port: number): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let down = false;
  const drop = (s: Socket) => {
    // resetAndDestroy sends an RST where it can, like a peer that went away; a plain destroy otherwise
    if (typeof s.resetAndDestroy === 'function' && !s.destroyed && s.readyState !== 'opening') s.resetAndDestroy();
    else s.destroy();
  };
  const server: Server = createServer((client) => {
    if (down) {
      client.on('error', () => {});
      drop(client);
      return;
    }
    const upstream = connect(port, host);
    open.add(client);
    open.add(upstream);
    const end = () => {
      open.delete(client);
      open.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const listening = (server.address() as { port: number }).port;
  return {
    port: listening,
    get isDown() {
      return down;
    },
    down() {
      down = true;
      for (const s of [...open]) drop(s);
      open.clear();
    },
    up() {
      down = false;
    },
    rewrite(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(listening);
      return u.toString().replace(/\/$/, url.endsWith('/') ? '/' : '');
    },
    async close() {
      down = true;
      for (const s of [...open]) s.destroy();
      open.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
