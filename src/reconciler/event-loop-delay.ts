import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Gauge, Histogram, type Registry } from 'prom-client';
import { EVENT_LOOP_RESOLUTION_MS } from './region-metrics.js';

/**
 * How often the cumulative histogram samples the event loop's lateness. A stall shows as one late
 * sample whatever the period, so the period sets what a share or a percentile of samples means: at
 * 100 ms (tried, to wake an idle region less) a p99 over a rollout was 5 times as sensitive to a stall
 * as at 20 ms, and not comparable with earlier figures. It fires in the same turn as the 20 ms histograms.
 */
const SAMPLE_MS = 20;

/**
 * How many samples in a row must be late before `lagMs` says the region is behind. One stall (start-up,
 * a checkpoint, a core taken by a neighbour for half a second) is not being behind: the loop is
 * free again right after it, and refusing enrolments then would only make devices wait for nothing
 * (seen in CI: the first enrolment after start-up was refused for start-up's own stall).
 */
const BEHIND_SAMPLES = 3;

/**
 * Two views of how late the event loop runs:
 * - `cascade_event_loop_delay_seconds{quantile="0.5"|"0.99"|"max"}`: since the previous scrape
 *   (perf_hooks.monitorEventLoopDelay, 20 ms resolution); each scrape reads and resets it.
 * - `cascade_event_loop_lag_seconds` (a Prometheus histogram, cumulative): one sample per 20 ms timer,
 *   how late it fired. The difference of two scrapes gives the distribution over any span, e.g. the
 *   share of samples over 50 ms during a rollout (`le="0.05"` over `_count`).
 */
export function watchEventLoopDelay(registry: Registry): { stop(): void; lagMs(): number } {
  const histogram = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  histogram.enable();
  new Gauge({
    name: 'cascade_event_loop_delay_seconds',
    help: 'Event loop delay since the previous scrape (p50, p99, max)',
    labelNames: ['quantile'],
    registers: [registry],
    collect() {
      const seconds = (ns: number) => (Number.isFinite(ns) ? ns / 1e9 : 0);
      this.set({ quantile: '0.5' }, seconds(histogram.percentile(50)));
      this.set({ quantile: '0.99' }, seconds(histogram.percentile(99)));
      this.set({ quantile: 'max' }, seconds(histogram.max));
      histogram.reset();
    },
  });
  const lag = new Histogram({
    name: 'cascade_event_loop_lag_seconds',
    help: 'How late a 20 ms timer fired, cumulative since start',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  let expected = performance.now() + SAMPLE_MS;
  let timer: NodeJS.Timeout | null = null;
  const recent = new Array<number>(BEHIND_SAMPLES).fill(0);
  let next = 0;
  const tick = (): void => {
    const now = performance.now();
    const late = Math.max(0, now - expected);
    recent[next] = late;
    next = (next + 1) % BEHIND_SAMPLES;
    lag.observe(late / 1000);
    expected = now + SAMPLE_MS;
    timer = setTimeout(tick, SAMPLE_MS);
    timer.unref();
  };
  timer = setTimeout(tick, SAMPLE_MS);
  timer.unref();
  return {
    /**
     * How late the sampling timer fired at least, over its last few runs (ms): a cheap sign the region
     * is behind now and has been for a while, not that it stalled once.
     */
    lagMs: () => Math.min(...recent),
    stop: () => {
      histogram.disable();
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}
