// An outbox event's source_time as the walsender sends it (timezone UTC, datestyle ISO) becomes the
// text the outbox source reads with to_char(… 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"').
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isoUtc } from '../../src/source/pgoutput/outbox-events.js';

test('source_time text → ISO 8601 UTC with microseconds, as outbox.ts reads it', () => {
  assert.equal(isoUtc('2026-11-25 14:27:05.123456+00'), '2026-11-25T14:27:05.123456Z');
  assert.equal(isoUtc('2026-11-25 14:27:05.1+00'), '2026-11-25T14:27:05.100000Z');
  assert.equal(isoUtc('2026-11-25 14:27:05+00'), '2026-11-25T14:27:05.000000Z');
  assert.equal(isoUtc(null), null);
  assert.equal(isoUtc(undefined), null);
});
