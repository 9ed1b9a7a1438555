// Every command the CLI knows, in the order `pg2crate --help` lists them.
import { backfillCommand } from './backfill.js';
import { catchUpCommand } from './catch-up.js';
import type { CatalogEntry } from './command-line.js';
import { deadLettersGroup } from './dead-letters.js';
import { demoCommand } from './demo.js';
import { migrateCommand } from './migrate.js';
import { slotGroup } from './slot.js';
import { startCommand } from './start.js';
import { statusCommand } from './status.js';
import { switchCaptureCommand } from './switch-capture.js';
import { tablesGroup } from './tables.js';
import { verifyCommand } from './verify.js';

export const CATALOG: readonly CatalogEntry[] = [
  migrateCommand, startCommand, catchUpCommand, tablesGroup, backfillCommand, verifyCommand, statusCommand,
  switchCaptureCommand, slotGroup, deadLettersGroup, demoCommand,
];
