// A TCP port on 127.0.0.1 that nothing listens on right now (the demo's server; test clusters).
// Another process may take it before the caller binds it: callers that can, retry.
import { createServer } from 'node:net';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
