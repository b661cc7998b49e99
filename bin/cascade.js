#!/usr/bin/env node
// Runs the JavaScript in dist/ when it was compiled from the sources as they are now (`npm run
// build`, which `npm ci` runs; the container image ships it): no compiler in the process, which
// saves about 25 MB of memory and half the start-up time. Otherwise (a checkout not built yet, or
// sources edited since the last build) runs the TypeScript sources through tsx, so `npx cascade`
// works with no build step and an edit is never shadowed by stale JavaScript.
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { COMPILED_MAIN, distIsCurrent } from './dist-freshness.js';

// `cascade region` is a long-running server, often on a small machine next to its devices, holding one
// long poll per device: most of its heap is request state that lives for one poll, then dies at
// once when a rollout answers every poll. V8's defaults trade memory for throughput the region does
// not need: a young generation grown to 2 x 16 MB, and an old one let grow to up to 4 times its
// live size between full collections. So, unless node was given its own settings:
// - --semi-space-growth-factor=1: the young generation stays at its initial 2 x 1 MB;
// - --heap-growing-percent=10: a full collection once the old generation grew 10% (at least 8 MB)
//   past what the last one left, so the polls a rollout answered are soon reclaimed.
// With 2,500 devices (bench/region.bench.ts) the peak RSS drops from ~160-210 MB to ~130 MB, for
// ~1-3 s more GC time over the benchmark's enrolment and rollout. A young generation sized at
// start-up costs less GC for a few MB more: NODE_OPTIONS=--max-semi-space-size=4 (the container
// image sets it) replaces the first flag (~136 MB). V8's heap reads both flags as it runs; they are
// set here before anything else is loaded.
const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
const gives = (pattern) => given.some((flag) => pattern.test(flag));
if (process.argv[2] === 'region') {
  if (!gives(/^--((max|min)[-_]semi[-_]space[-_]size|semi[-_]space[-_]growth[-_]factor)\b/)) {
    setFlagsFromString('--semi-space-growth-factor=1');
    // A region past 5,000 devices lets it grow again (src/region/heap-tuning.ts).
    globalThis[Symbol.for('cascade.pinnedYoungGeneration')] = true;
  }
  if (!gives(/^--heap[-_]growing[-_]percent\b/)) setFlagsFromString('--heap-growing-percent=10');
}
// `cascade agent` runs on the device all the time, mostly waiting on one long poll or one MQTT
// subscription: its JavaScript is glue around sockets, files, hashes and child processes (the
// heavy work is native). V8's optimizing compiler would still, sooner or later, compile a function
// that ran often enough (a path helper at start-up, the poll loop after some hours), and the
// compiler's code and data then stay resident: 3-4 MB, 7% of the agent's memory, for no speed a
// device notices. So the agent interprets (and uses the baseline compiler), unless node was given
// its own --opt / --no-opt / --max-opt. The simulator (`cascade simulate`, thousands of devices in
// one process) is not the agent and keeps the compiler.
if (process.argv[2] === 'agent' && !gives(/^--(no[-_])?opt\b|^--max[-_]opt\b/)) setFlagsFromString('--no-opt');

let main;
if (await distIsCurrent()) {
  ({ main } = await import(pathToFileURL(COMPILED_MAIN).href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
await main(process.argv);
