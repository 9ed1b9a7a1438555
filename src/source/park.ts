// Writes the changes the target refused into the dead-letter table, for both capture modes.
//
// Letters are written before their page is confirmed, so a page applied again after a failure in
// between (its confirm, the page beside it, a crash before pgoutput's acknowledgement) parks the
// same changes again. A letter already parked for the stream is not written twice. What "already
// parked" means depends on how the source numbers its changes:
// - 'event': the outbox's event ids are the same every time the page is read, so the letter of the
//   same event (id, table, kind) is the same letter. One retried or discarded meanwhile is parked anew.
// - 'image': pgoutput numbers its changes anew with each stream, so the same change comes again
//   under another number; a letter of the same table, kind and row image is the same letter. Two
//   changes alike are then one letter, which loses nothing: retry sends the key's current state.
import type pg from 'pg';
import type { DeadLetter } from './change-source.js';

export type SameLetter = 'event' | 'image';

export async function parkLetters(db: pg.ClientBase, deadLetters: string, stream: string, letters: readonly DeadLetter[], same: SameLetter): Promise<void> {
  if (letters.length === 0) return;
  const match = same === 'event' ? 'd.event_id = x.event_id' : 'd.data is not distinct from x.data';
  await db.query(
    `insert into ${deadLetters} (stream, event_id, table_id, op, data, error_code, error, attempts)
     select $1, x.event_id, x.table_id, x.op, x.data, x.error_code, x.error, x.attempts
       from jsonb_to_recordset($2::jsonb) as x(event_id bigint, table_id int, op "char", data jsonb, error_code text, error text, attempts int)
      where not exists (select 1 from ${deadLetters} d where d.stream = $1 and d.table_id = x.table_id and d.op = x.op and ${match})`,
    [
      stream,
      // the row's own JSON text as `data`, not a string holding it
      '[' + letters.map((l) => JSON.stringify({
        event_id: l.change.id, table_id: l.change.tableId, op: l.change.op, data: null, error_code: l.code ?? null, error: l.message, attempts: l.attempts,
      }).replace(/"data":null/, `"data":${l.change.raw ?? 'null'}`)).join(',') + ']',
    ],
  );
}
