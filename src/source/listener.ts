// Wake-ups over LISTEN/NOTIFY. A notification is only a hint that work may be waiting; the data
// path is always the outbox, and polling runs regardless. The listener has its own connection
// (pg-listen), reconnects with jittered exponential backoff, and wakes the drainer after every
// (re)connect because notifications sent while it was away are lost. If LISTEN cannot work (a
// transaction-pooling proxy, a refused connection) it says so once and the drainer polls alone.
import * as pgListen from 'pg-listen';
import type { Subscriber, Options } from 'pg-listen';
import type pg from 'pg';
import { backoffDelay } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

// pg-listen is CommonJS with a default export; under ESM it arrives wrapped.
type CreateSubscriber = (config: pg.ClientConfig, options: Options) => Subscriber;
const mod = pgListen as unknown as { default: CreateSubscriber | { default: CreateSubscriber } };
const createSubscriber: CreateSubscriber = typeof mod.default === 'function' ? mod.default : mod.default.default;

export class Listener {
  readonly #connection: pg.ClientConfig;
  readonly #channel: string;
  readonly #onWake: () => void;
  readonly #log: Logger;
  #sub: Subscriber | null = null;
  #warned = false;

  constructor(connection: pg.ClientConfig, channel: string, onWake: () => void, logger: Logger) {
    this.#connection = connection;
    this.#channel = channel;
    this.#onWake = onWake;
    this.#log = logger.child({ component: 'listener' });
  }

  async start(): Promise<void> {
    if (this.#sub) return;
    // pg-listen's close() does not end a reconnect loop that is under way: without these checks a
    // listener stopped during an outage reconnects (and LISTENs) once the server is back.
    const stopped = () => this.#sub !== sub;
    const sub = createSubscriber(
      { ...this.#connection, application_name: 'pg2crate listener', keepAlive: true },
      {
        retryInterval: (attempt: number) => {
          // Thrown inside the reconnect loop, this ends it.
          if (stopped()) throw new Error('the listener was stopped');
          return backoffDelay(attempt, 250, 10_000);
        },
        retryTimeout: 0, paranoidChecking: 5_000, parse: (s: string) => s,
      },
    );
    this.#sub = sub;
    sub.notifications.on(this.#channel, () => this.#onWake());
    sub.events.on('connected', () => {
      if (stopped()) {
        void sub.close().catch(() => {});
        return;
      }
      this.#log.info({ channel: this.#channel }, 'listening again; draining what arrived meanwhile');
      this.#onWake();
    });
    sub.events.on('reconnect', (attempt: number) => {
      if (attempt === 1 && !stopped()) this.#log.warn({ channel: this.#channel }, 'listener connection lost; reconnecting, polling meanwhile');
    });
    sub.events.on('error', (err: Error) => {
      if (stopped()) return;
      if (!this.#warned) this.#log.warn({ err, channel: this.#channel }, 'listener failed; running on polling alone');
      this.#warned = true;
    });
    try {
      await sub.connect();
      await sub.listenTo(this.#channel);
      this.#onWake();
    } catch (err) {
      this.#log.warn({ err, channel: this.#channel }, 'cannot LISTEN; running on polling alone');
      this.#warned = true;
      this.#sub = null;
      await sub.close().catch(() => {});
    }
  }

  async stop(): Promise<void> {
    const sub = this.#sub;
    this.#sub = null;
    if (sub) await sub.close().catch(() => {});
  }
}
