// A preload for the drain bench (node --require): records when each HTTP request of the process
// began and ended (epoch milliseconds, sub-millisecond), and writes them as JSON to the file named
// by PG2CRATE_BENCH_REQUEST_LOG when the process exits, with the process's own CPU time and peak
// resident memory (for a child that exits by itself, whose /proc entry is gone by then). The bench then works out, over its own
// clock of the drain, the share of time with no request to CrateDB in flight and how many were in
// flight on average (bench/drain.ts). Nothing of the replicator is changed: the sink's client calls
// http.request (or https.request) through the module object, which this wraps.
'use strict';
const file = process.env.PG2CRATE_BENCH_REQUEST_LOG;
if (file) {
  const fs = require('node:fs');
  const { performance } = require('node:perf_hooks');
  const now = () => performance.timeOrigin + performance.now();
  /** [began, ended] per request; ended stays null for one still in flight at exit */
  const spans = [];
  for (const mod of [require('node:http'), require('node:https')]) {
    const request = mod.request;
    mod.request = function meteredRequest(...args) {
      const span = [now(), null];
      spans.push(span);
      const req = request.apply(this, args);
      const end = () => { if (span[1] === null) span[1] = now(); };
      req.once('response', (res) => { res.once('end', end); res.once('close', end); });
      req.once('error', end);
      req.once('close', end);
      return req;
    };
  }
  process.once('exit', () => {
    try {
      const cpu = process.cpuUsage();
      fs.writeFileSync(file, JSON.stringify({ spans, cpuMicros: cpu.user + cpu.system, maxRssKiB: process.resourceUsage().maxRSS }));
    } catch {
      // the bench reports the figure as missing
    }
  });
}
