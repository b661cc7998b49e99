import { setFlagsFromString } from 'node:v8';

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
