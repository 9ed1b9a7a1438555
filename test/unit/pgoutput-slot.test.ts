// The snapshot a slot exports, as pg_snapshot reads it back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalSnapshot } from '../../src/source/pgoutput/slot.js';

test('an exported snapshot whose xmin passed its xmax reads back as the same snapshot', () => {
  // snapbuild.c moves xmax only at catalog commits: "753:752:" is what pg_current_snapshot() printed
  // for a slot made consistent while transaction 753 was open, and pg_snapshot's input refuses it
  assert.equal(normalSnapshot('753:752:'), '753:753:');
  assert.equal(normalSnapshot('4294967996:4294967990:'), '4294967996:4294967996:');
  assert.equal(normalSnapshot('740:760:741,755'), '740:760:741,755');
  assert.equal(normalSnapshot('760:760:'), '760:760:');
});
