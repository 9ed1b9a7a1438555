// PLACEHOLDER while the CrateDB sink is being written (issue 10); replaced before commit.
import type { CrateOptions, TargetConfig } from '../../config.js';
import type { Logger } from '../../logger.js';
import type { TableInfo } from '../../change.js';
import type { ApplyResult, Sink, SinkTableBatch } from '../sink.js';

export function crateTargetName(schema: string, table: string): { schema: string; table: string } {
  return { schema, table };
}

export class CrateSink implements Sink {
  readonly name = 'cratedb';
  constructor(_t: Extract<TargetConfig, { kind: 'cratedb' }>, _o: CrateOptions, _l: Logger) {}
  async start(): Promise<void> { throw new Error('not yet'); }
  async prepare(_t: TableInfo): Promise<void> {}
  async apply(_b: SinkTableBatch[]): Promise<ApplyResult> { return { rejected: [] }; }
  async stop(): Promise<void> {}
}
