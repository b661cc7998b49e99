import { performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Past this many devices the young generation may grow again. */
export const LARGE_FLEET_DEVICES = 5_000;

let released = false;

/**
 * bin/cascade.js pins a region's young generation at its initial 2 x 1 MB, which keeps a small
 * region's memory low. A region with tens of thousands of devices allocates faster than that (every
 * enrolment, report and hand-out): at 50,000 devices it spent 35% of its CPU collecting garbage, in
 * pauses of seconds (9.5% with a young generation of 2 x 16 MB). So once the fleet passes
 * LARGE_FLEET_DEVICES, V8 may grow it again as it would by default (up to 2 x 16 MB), for up to
 * ~30 MB more memory. Not when the operator gave node its own young-generation settings (then
 * bin/cascade.js pinned nothing).
 */
export function fleetGrew(devices: number): void {
  if (released || devices < LARGE_FLEET_DEVICES) return;
  if ((globalThis as Record<symbol, unknown>)[Symbol.for('cascade.pinnedYoungGeneration')] !== true) return;
  released = true;
  setFlagsFromString('--semi-space-growth-factor=2');
}

/** How often the settler looks at the event loop. */
const SETTLE_TICK_MS = 5_000;
/** A tick in which the event loop was busy less than this share of the time is quiet. */
const QUIET_UTILIZATION = 0.05;
/**
 * Quiet ticks in a row before the settler collects (30 s). It acts once per quiet spell, after the
 * work is surely over: a full collection of a 50,000-device heap pauses the region ~60-130 ms on a slow
 * 2-core machine, which soon after a burst (an enrolment wave, a rollout's last reports) would only
 * be repeated by the next burst.
 */
export const QUIET_TICKS = 6;
/** A young generation above this has grown (V8 starts it at 2 x 1 MB; 2 x 16 MB at most). */
const YOUNG_FLOOR_BYTES = 4 * 2 ** 20;
/** Garbage worth a full collection: the heap used grew this much since the settler's last one. */
const OLD_GROWTH_BYTES = 8 * 2 ** 20;
/**
 * Minor collections per quiet spell at most. V8 shrinks the young generation at a collection when the
 * allocation rate over its last ~5 s of collections is low: the first one after work still counts the
 * work, so it takes two at this tick (four at half of it, in the test).
 */
export const MAX_MINOR_PER_QUIET = 6;

export interface HeapReading {
  /** The young generation's reserved size (both semispaces). */
  youngBytes: number;
  /** V8 heap in use, live objects and garbage not yet collected. */
  usedBytes: number;
}

export interface MemorySettlerOptions {
  /** Share of the time since the last call the event loop was busy (performance.eventLoopUtilization). */
  utilization: () => number;
  heap: () => HeapReading;
  collect: (type: 'minor' | 'major') => void;
  /** Quiet ticks before collecting (default QUIET_TICKS). */
  quietTicks?: number;
}

/**
 * What a region does with memory once a rollout is over. V8 grows the young generation (to 2 x 16 MB
 * past LARGE_FLEET_DEVICES) and lets garbage sit in the old one while the region works, and gives
 * neither back by itself when the region then falls quiet: a quiet region allocates so little that V8
 * never collects again, so it held 32 MB of young generation and the rollout's garbage for as long as
 * nothing changed (45 s after a 10,000-device rollout, RSS had not moved). Every SETTLE_TICK_MS the
 * settler reads the event loop's utilization; after QUIET_TICKS quiet ticks in a row (30 s) it collects:
 * - once per quiet spell, a full collection if the heap in use grew OLD_GROWTH_BYTES since its last one
 *   (~16 ms for a 37 MB heap on a 2-core machine; at 50,000 devices the settle window's full-collection
 *   pauses came to 60-130 ms: an event-loop stall once per quiet spell, when nothing is waiting);
 * - a minor collection per tick while the young generation is above YOUNG_FLOOR_BYTES (about a
 *   millisecond: a quiet region has next to nothing young alive). V8 shrinks the young generation
 *   at a collection that sees a low allocation rate, so the second or third one gives it back.
 * A busy tick ends the spell; work then grows the young generation again as V8 sees fit.
 */
export class MemorySettler {
  private quiet = 0;
  private minors = 0;
  private majorDone = false;
  private usedAfterMajor: number;
  /** Collections run, by kind (for the region's metrics and the tests). */
  readonly collections = { minor: 0, major: 0 };

  constructor(private readonly options: MemorySettlerOptions) {
    this.usedAfterMajor = options.heap().usedBytes;
  }

  /** One look; what `startMemorySettler` runs every SETTLE_TICK_MS. */
  tick(): void {
    if (this.options.utilization() >= QUIET_UTILIZATION) {
      this.quiet = 0;
      this.minors = 0;
      this.majorDone = false;
      return;
    }
    if (++this.quiet < (this.options.quietTicks ?? QUIET_TICKS)) return;
    const before = this.options.heap();
    if (!this.majorDone && before.usedBytes > this.usedAfterMajor + OLD_GROWTH_BYTES) {
      this.majorDone = true;
      this.options.collect('major');
      this.collections.major++;
      this.usedAfterMajor = this.options.heap().usedBytes;
      return;
    }
    if (before.youngBytes > YOUNG_FLOOR_BYTES && this.minors < MAX_MINOR_PER_QUIET) {
      this.minors++;
      this.options.collect('minor');
      this.collections.minor++;
    }
  }
}

/**
 * The settler on this process's own V8: the collector comes from `--expose-gc`, set now and read by a
 * fresh context only (the region's global scope gets no `gc`). Returns null where V8 refuses it.
 */
export function startMemorySettler(options: { quietTicks?: number } = {}): { settler: MemorySettler; stop(): void } | null {
  let gc: ((options: { type: 'minor' | 'major' }) => void) | undefined;
  try {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as typeof gc;
  } catch {
    return null;
  }
  if (typeof gc !== 'function') return null;
  const collect = gc;
  let last = performance.eventLoopUtilization();
  const settler = new MemorySettler({
    utilization: () => {
      const now = performance.eventLoopUtilization();
      const share = performance.eventLoopUtilization(now, last).utilization;
      last = now;
      return share;
    },
    heap: () => {
      const young = getHeapSpaceStatistics().find((space) => space.space_name === 'new_space');
      return { youngBytes: young?.space_size ?? 0, usedBytes: getHeapStatistics().used_heap_size };
    },
    collect: (type) => collect({ type }),
    ...options,
  });
  const timer = setInterval(() => settler.tick(), SETTLE_TICK_MS);
  timer.unref();
  return { settler, stop: () => clearInterval(timer) };
}
