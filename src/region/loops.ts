import type { PassScheduler } from '../reconciler/pass-scheduler.js';
import type { FleetSource } from '../source/fleet-source.js';

/** How often time alone re-plans (devices fall silent, bakes end): a pass that does not fetch. */
const TICK_MS = 5_000;

export interface RegionLoops {
  /** Asks for a pass at `at` (a bake ends, a window opens); the earliest asked time wins. */
  wakeUpAt(at: number): void;
  /** A fetching pass after `ms` (the reconciler's backoff after a temporary failure). */
  retryIn(ms: number): void;
  stop(): void;
}

/**
 * The region's timers: a fetch every `intervalMs`, a re-plan every tick, the source's own change
 * signal (a local repository), and one-shot wake-ups the rollouts ask for. Passes themselves are
 * the scheduler's; this only asks for them.
 */
export function startRegionLoops(opts: { scheduler: PassScheduler; source: FleetSource; intervalMs: number; clock: () => number }): RegionLoops {
  const { scheduler, source, clock } = opts;
  let wakeUp: { at: number; timer: NodeJS.Timeout } | null = null;
  let retry: NodeJS.Timeout | null = null;
  scheduler.request({ fetch: true, reason: 'startup' });
  const interval = setInterval(() => scheduler.request({ fetch: true, reason: 'interval' }), opts.intervalMs);
  const tick = setInterval(() => scheduler.request({ fetch: false, reason: 'tick' }), Math.min(TICK_MS, opts.intervalMs));
  const unwatch = source.watch(() => scheduler.request({ fetch: true, reason: 'source changed' }));
  return {
    wakeUpAt(at) {
      if (wakeUp && wakeUp.at <= at) return;
      if (wakeUp) clearTimeout(wakeUp.timer);
      // Capped so a far-off window still gets a timely look; the interval passes cover the rest.
      const delay = Math.min(Math.max(at - clock(), 0) + 5, 2 ** 31 - 1);
      wakeUp = {
        at,
        timer: setTimeout(() => {
          wakeUp = null;
          scheduler.request({ fetch: false, reason: 'rollout timer' });
        }, delay),
      };
    },
    retryIn(ms) {
      if (retry) clearTimeout(retry);
      retry = setTimeout(() => {
        retry = null;
        scheduler.request({ fetch: true, reason: 'retry after a temporary failure' });
      }, ms);
    },
    stop() {
      if (retry) clearTimeout(retry);
      clearInterval(interval);
      clearInterval(tick);
      if (wakeUp) clearTimeout(wakeUp.timer);
      wakeUp = null;
      unwatch();
    },
  };
}
