// The in-place checks of row-values.ts answer as the regular expressions they stand for: a random
// and a hand-picked set of texts, each read inside a longer text (as a value is read in its row).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OBJECT_NEEDS_PARSING, objectNeedsParsingAt, TIMESTAMP_IN_RANGE, timestampFitsAt } from '../../src/sink/cratedb/row-values.js';

let seed = 7;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const pick = (s: string) => s[Math.floor(random() * s.length)];

/** What timestamp() passes as it is: the expression, no year 0000, and for a key no sub-millisecond digit. */
function timestampPasses(v: string, isKey: boolean): boolean {
  const m = TIMESTAMP_IN_RANGE.exec(v);
  if (!m || v.startsWith('0000')) return false;
  return !(isKey && m[2] !== undefined && /[1-9]/.test(m[2].slice(3)));
}

/** A timestamp-like text with one part maybe broken: a digit or separator changed, dropped or added. */
function timestampLike(): string {
  const d = () => String(Math.floor(random() * 10));
  const year = random() < 0.1 ? '0000' : random() < 0.05 ? '10000' : `${d()}${d()}${d()}${d()}`;
  let s = `${year}-${d()}${d()}-${d()}${d()}`;
  if (random() < 0.8) {
    s += `${pick('T T')}${d()}${d()}:${d()}${d()}:${d()}${d()}`;
    if (random() < 0.6) s += '.' + Array.from({ length: Math.floor(random() * 8) }, () => (random() < 0.5 ? '0' : d())).join('');
  }
  const zone = random();
  if (zone < 0.2) s += 'Z';
  else if (zone < 0.7) {
    s += `${pick('+-')}${d()}${d()}`;
    if (random() < 0.5) s += `${random() < 0.5 ? ':' : ''}${d()}${d()}`;
    if (random() < 0.3) s += `${random() < 0.5 ? ':' : ''}${d()}${d()}`;
  } else if (zone < 0.75) s += ' BC';
  // break it sometimes
  if (random() < 0.3) {
    const i = Math.floor(random() * (s.length + 1));
    const op = random();
    s = op < 0.33 ? s.slice(0, i) + s.slice(i + 1) : op < 0.66 ? s.slice(0, i) + pick('0:-.TZ+ x\\') + s.slice(i) : s.slice(0, i) + pick('0:-.TZ+ x') + s.slice(i + 1);
  }
  return s;
}

test('timestampFitsAt is true only where timestamp() passes the value as it is, and true for the common forms', () => {
  const common = ['2026-12-07', '2026-12-07T08:30:00', '2026-12-07T08:30:00.123456', '2026-12-07 08:30:00+00', '2026-12-07T08:30:00.5+05:30', '2026-12-07T08:30:00-0330', '2026-12-07T08:30:00Z', '1999-01-01T00:00:00.000+01:02:03'];
  for (const v of common) for (const isKey of [false, true]) {
    const fits = timestampFitsAt(`"x":"${v}",`, 5, 5 + v.length, isKey);
    assert.equal(fits, timestampPasses(v, isKey), `${v} (key: ${isKey})`);
    if (!isKey || !v.includes('.123456')) assert.ok(fits, `${v} should be read in place`);
  }
  let accepted = 0;
  for (let n = 0; n < 20_000; n++) {
    const v = timestampLike();
    const isKey = random() < 0.5;
    const fits = timestampFitsAt(`{"t":"${v}"}`, 6, 6 + v.length, isKey);
    // true must never pass what the expression refuses; the few forms it leaves to timestamp() are allowed
    if (fits) assert.ok(timestampPasses(v, isKey), `${JSON.stringify(v)} (key: ${isKey}) passed in place but not by timestamp()`);
    if (fits) accepted++;
    else if (timestampPasses(v, isKey)) assert.fail(`${JSON.stringify(v)} (key: ${isKey}) passes timestamp() but not in place`);
  }
  assert.ok(accepted > 5_000, `only ${accepted} of 20,000 generated timestamps passed`);
});

test('objectNeedsParsingAt answers as OBJECT_NEEDS_PARSING on the slice', () => {
  const common = ['{"n": 1}', '{"n": 1.5}', '{"n": 1e5}', '{"n": 2E3}', '{"n": 1234567890123456}', '{"n": 123456789012345}', '{"_value": 1}', '{"a": "x_value"}', '{"s": "v1.2"}', '{}'];
  for (const v of common) assert.equal(objectNeedsParsingAt(`[${v}]`, 1, 1 + v.length), OBJECT_NEEDS_PARSING.test(v), v);
  for (let n = 0; n < 20_000; n++) {
    const v = Array.from({ length: Math.floor(random() * 40) }, () => (random() < 0.5 ? pick('0123456789') : pick('.eE"_value{}:, x'))).join('');
    // the same text inside others: what lies around the value must not count
    assert.equal(objectNeedsParsingAt(`9"_value"${v}.9`, 9, 9 + v.length), OBJECT_NEEDS_PARSING.test(v), JSON.stringify(v));
  }
});
