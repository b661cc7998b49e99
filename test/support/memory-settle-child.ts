// A process whose young generation grew, then falls quiet: `node --import tsx memory-settle-child.ts settle|control`.
// With `settle`, runs the region's MemorySettler every 2.5 s (its real collector, utilization and heap
// readings); with `control`, waits as long without it. Prints the young generation's size before and
// after, and the collections the settler ran, as JSON.
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { startMemorySettler } from '../../src/region/heap-tuning.js';

// As a region past LARGE_FLEET_DEVICES: a young generation that starts at 2 x 1 MB and may grow.
setFlagsFromString('--semi-space-growth-factor=2');
const young = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Work with survivors (a rollout's reports and hand-outs): V8 grows the young generation.
const kept: object[] = [];
for (let round = 0; round < 60; round++) {
  const batch: object[] = [];
  for (let i = 0; i < 50_000; i++) batch.push({ device: `d-${i}`, apps: { web: { version: `${round}.0.0`, state: 'healthy' } } });
  kept.push(batch);
  if (kept.length > 4) kept.shift();
}
kept.length = 0;
const grown = young();
// Two quiet ticks instead of six: what is tested here is V8 giving the young generation back, not the wait.
const settling = process.argv[2] === 'settle' ? startMemorySettler({ quietTicks: 2 }) : null;
// Its own 5 s timer is stopped: the ticks below are driven by hand, at a known pace.
settling?.stop();
// Half the settler's own 5 s tick: V8 judges the allocation rate over the last 5 s of collections.
for (let i = 0; i < 8; i++) {
  await sleep(2_500);
  settling?.settler.tick();
}
process.stdout.write(JSON.stringify({ grown, after: young(), collections: settling?.settler.collections ?? null }));
