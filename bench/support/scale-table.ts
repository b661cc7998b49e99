// The tables of scale runs made one size at a time: `node --import tsx bench/support/scale-table.ts a.json b.json ...`
// (each the JSON `node --import tsx bench/scale.bench.ts` prints) prints the suite's rows, as `npm run bench` would,
// and the growth table of the README.
import { readFileSync } from 'node:fs';
import { scaleFigures, type ScaleResult } from '../scale.bench.js';
import type { BenchFigure } from '../types.js';

const results = process.argv.slice(2).flatMap((file) => JSON.parse(readFileSync(file, 'utf8')) as ScaleResult[]);
const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
const row = (f: BenchFigure) =>
  `| scale | ${f.name} | ${fmt(f.value)} ${f.unit} | ${f.baseline ? `${f.baseline.name}: ${fmt(f.baseline.value)} ${f.baseline.unit}` : ''} | ${f.ratio !== undefined ? `${(f.ratio * 100).toPrecision(3)}%` : ''} | ${f.goal} | ${f.met ? 'yes' : 'NO'} |`;
console.log('| suite | figure | value | baseline (same run) | ratio | goal | met |\n|---|---|---|---|---|---|---|');
for (const r of results) for (const f of scaleFigures(r)) console.log(row(f));
console.log('\n| devices | transport | enrol + converge | region CPU per device (enrolment) | commit to last desired state at the region broker | commit to 100% converged | region CPU per device (rollout) | idle region CPU | GET /api/v1/status (idle / during rollout) | event-loop p99 over the rollout (share > 50 ms) | V8 heap per device | RSS per device (right after the rollout / settled) |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  const kb = (mb: number) => `${((mb * 1024) / r.devices).toFixed(2)} KB`;
  const push = r.transport === 'mqtt' ? `${r.lastPublishSeconds.toFixed(2)} s (${(r.lastPublishSeconds / r.baselinePublishSeconds).toFixed(1)}x bare MQTT.js ${r.baselinePublishSeconds.toFixed(2)} s)` : `handed out in ${r.handedOutSeconds.toFixed(2)} s`;
  console.log(
    `| ${r.devices.toLocaleString('en')} | ${r.transport === 'mqtt' ? `MQTT, ${r.sites} site brokers` : 'HTTP long poll'} | ${r.enrolSeconds.toFixed(0)} s | ${((r.enrolCpuSeconds / r.devices) * 1e6).toFixed(0)} µs | ${push} | ${r.convergedSeconds.toFixed(1)} s | ${((r.rolloutCpuSeconds / r.devices) * 1e6).toFixed(0)} µs | ${r.idleCpuPercent.toFixed(2)}% | ${r.statusMs.toFixed(1)} / ${r.statusRolloutMs.toFixed(1)} ms | ${r.eventLoopRolloutP99Ms.toFixed(0)} ms (${(r.eventLoopOver50msShare * 100).toFixed(1)}%) | ${kb(r.heapMb - r.baseHeapMb)} | ${kb(r.rssMb - r.baseRssMb)}${r.settledRssMb !== undefined ? ` / ${kb(r.settledRssMb - r.baseRssMb)}` : ''} |`,
  );
}
