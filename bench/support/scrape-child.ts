// The scale benchmark's monitoring client as a process of its own: `node --import tsx bench/support/scrape-child.ts <region url>`.
// Every second, as a monitoring system would: GET /metrics, then GET /api/v1/status, each timed. On SIGTERM
// it writes what it measured as one JSON line to stdout and exits. In its own process, its timings are not
// delayed by the bench's event loop (which takes every desired-state message of the rollout meanwhile).
import { metricValue } from './region-child.js';

const url = process.argv[2]!;
const out = { metricsMs: [] as number[], statusMs: [] as number[], loopP99Ms: [] as number[], loopMaxMs: [] as number[] };
let running = true;
const quantile = (text: string, q: string): number => metricValue(text, 'cascade_event_loop_delay_seconds', `quantile="${q}"`) * 1000;
process.once('SIGTERM', () => {
  running = false;
  process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
});
// Once untimed: the first fetch of a process loads and sets up its HTTP client (~200 ms).
await (await fetch(`${url}/metrics`)).text();
process.stdout.write('ready\n');
while (running) {
  const t0 = performance.now();
  try {
    const text = await (await fetch(`${url}/metrics`)).text();
    if (!running) break;
    out.metricsMs.push(performance.now() - t0);
    out.loopP99Ms.push(quantile(text, '0.99'));
    out.loopMaxMs.push(quantile(text, 'max'));
    const t1 = performance.now();
    await (await fetch(`${url}/api/v1/status`)).arrayBuffer();
    if (!running) break;
    out.statusMs.push(performance.now() - t1);
  } catch {
    // The region restarting (the SIGKILL run): the next second tries again.
  }
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1000 - (performance.now() - t0))));
}
