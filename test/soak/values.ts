// Random values of the column types the soak writes: text with quotes, backslashes and unicode,
// jsonb (nested, with numbers CrateDB keeps exactly), arrays, numeric(38,10), bigint beyond 2^53,
// timestamptz with microseconds. Every value is something both targets hold exactly (CrateDB:
// shared/CRATEDB.md), so a difference in the end is a difference, not a type limit.
import type { Rng } from './random.js';

/** docs ids start here: above 2^53, where a double would round them */
export const BIG_ID = 9_007_199_254_740_000n;

const PIECES = [
  "O'Brien", '"quoted"', 'back\\slash', 'ü', 'ß', '日本語', '🦀', 'tab\tx', 'line\nbreak', '€ 5', "it''s", '%_',
  'Ω', '\u00a0nbsp', 'plain', 'x', '', 'Zoë', 'naïve café', '{"not": "json"}', 'a,b', '(1,2)', 'NULL',
];

export function text(r: Rng, parts = r.int(1, 4)): string {
  const out: string[] = [];
  for (let i = 0; i < parts; i++) out.push(r.pick(PIECES));
  return out.join(r.pick([' ', '', '-', ' | ']));
}

/** a numeric(38,10) value as text: up to 20 digits before the point */
export function numeric38(r: Rng): string {
  const int = r.chance(0.2) ? String(r.int(0, 9)) : `${r.int(1, 99999)}${String(r.int(0, 999999999)).padStart(9, '0')}${r.chance(0.3) ? String(r.int(0, 999999)).padStart(6, '0') : ''}`;
  const frac = String(r.int(0, 9999999999)).padStart(10, '0');
  return `${r.chance(0.2) ? '-' : ''}${int}.${frac}`;
}

/** numeric(20,4) */
export function numeric20(r: Rng): string {
  return `${r.chance(0.2) ? '-' : ''}${r.int(0, 999999999)}.${String(r.int(0, 9999)).padStart(4, '0')}`;
}

/** a bigint beyond 2^53 (or a small one), as text */
export function bigint(r: Rng): string {
  if (r.chance(0.3)) return String(r.int(-1000, 1000));
  const v = BIG_ID + BigInt(r.int(0, 2 ** 30)) * BigInt(r.int(1, 1000));
  return String(r.chance(0.2) ? -v : v);
}

/** timestamptz text with microseconds, between 1990 and 2090 */
export function timestamp(r: Rng): string {
  const ms = Date.UTC(1990, 0, 1) + Math.floor(r.next() * 100 * 365.25 * 86_400_000);
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 23)}${String(r.int(0, 999)).padStart(3, '0')}+00`;
}

/** a jsonb document: objects, arrays, strings, safe integers and short decimals, booleans, null */
export function json(r: Rng, depth = 0): unknown {
  const kind = depth >= 3 ? r.int(0, 3) : r.int(0, 5);
  switch (kind) {
    case 0: return r.int(-(2 ** 40), 2 ** 40);
    case 1: return text(r, r.int(1, 2));
    case 2: return r.chance(0.5) ? r.chance(0.5) : null;
    case 3: return Number(`${r.int(0, 99999)}.${r.int(1, 999)}`);
    case 4: return Array.from({ length: r.int(0, 3) }, () => json(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = r.int(0, 4); i > 0; i--) o[r.pick(['a', 'b', 'name', 'n', 'deep', 'list', 'ü', 'k k'])] = json(r, depth + 1);
      return o;
    }
  }
}

/** a jsonb value for a column: mostly objects, sometimes a top-level array or scalar */
export function jsonDoc(r: Rng): string {
  const v = r.chance(0.85) ? { v: r.int(0, 1e6), t: text(r, 1), x: json(r, 1) } : json(r, 1);
  return JSON.stringify(v);
}

export function textArray(r: Rng): string[] {
  return Array.from({ length: r.int(0, 4) }, () => text(r, 1));
}

export function bigintArray(r: Rng): string[] {
  return Array.from({ length: r.int(0, 3) }, () => bigint(r));
}
