// A node:test reporter for the compatibility suite: one JSON line per finished test (and per
// skipped suite, whose tests are then not reported), with its file, outcome, skip reason, duration
// and, for a failure, the error's first line. test/compat/run.ts reads them into its matrix
// (MatrixLine there). JavaScript, not TypeScript: node loads reporters before --import hooks.

/** @param {AsyncIterable<{ type: string, data: any }>} source */
export default async function* matrixReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const data = event.data;
    const suite = data.details.type === 'suite';
    // A suite that ran reports its tests one by one; only a skipped one stands for them.
    if (suite && !data.skip && event.type === 'test:pass') continue;
    const line = {
      file: data.file ?? '?',
      name: data.name,
      outcome: event.type === 'test:fail' ? 'fail' : data.skip ? 'skip' : 'pass',
      ms: Math.round(data.details.duration_ms),
      suite,
    };
    if (typeof data.skip === 'string') line.reason = data.skip;
    if (event.type === 'test:fail') {
      const err = data.details.error;
      line.reason = String(err?.cause?.message ?? err?.message ?? 'failed').split('\n')[0];
    }
    yield `${JSON.stringify(line)}\n`;
  }
}
