import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/**
 * `cascade_event_loop_delay_seconds{quantile="0.5"|"0.99"|"max"}`: how late the event loop ran its
 * timers since the previous scrape (perf_hooks.monitorEventLoopDelay, 10 ms resolution). Each scrape
 * reads and resets the histogram, so a figure covers the time between two scrapes.
 */
export function watchEventLoopDelay(registry: Registry): { stop(): void } {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
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
  return { stop: () => histogram.disable() };
}
