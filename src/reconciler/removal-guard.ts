import type { DeviceDesired, DeviceId } from '../core/types.js';
import type { LoadedFleet } from '../desired/model.js';
import { allowRemovalHint, allowsRemoval, countRemovals, describeRemoval, exceedsRemovalLimit, ALLOW_REMOVAL_TRAILER } from '../plan/removal.js';
import { readCommitMessage } from '../source/commit-message.js';

export interface RemovalGuardOptions {
  /** Largest fraction of the region's devices a revision may take apps from (`--max-removal`, 0.1 by default). */
  maxRemoval: number;
}

/**
 * Why a revision that loaded fine must still not be applied because of what it removes (plan/removal.ts
 * has the rules), or null. Checked after validation: the counts need both desired states.
 */
export async function refuseRemoval(input: {
  gitdir: string;
  head: string;
  region: string;
  maxRemoval: number;
  /** The served fleet, when known: its Region document must not vanish. */
  previous: LoadedFleet | null;
  next: LoadedFleet;
  devices: readonly DeviceId[];
  before: ReadonlyMap<DeviceId, DeviceDesired>;
  after: ReadonlyMap<DeviceId, DeviceDesired>;
}): Promise<string | null> {
  const problems: string[] = [];
  if (input.previous?.regions.has(input.region) && !input.next.regions.has(input.region)) {
    problems.push(`it deletes the Region document of this region (${input.region})`);
  }
  const count = countRemovals({ region: input.region, devices: input.devices, before: input.before, after: input.after });
  if (exceedsRemovalLimit(count, input.maxRemoval)) problems.push(describeRemoval(count, input.maxRemoval));
  if (problems.length === 0) return null;
  const message = await readCommitMessage({ gitdir: input.gitdir }, input.head);
  if (allowsRemoval(message)) return null;
  return `refused ${input.head.slice(0, 8)}: ${problems.join('; and ')}; still serving the last good revision. Without "${ALLOW_REMOVAL_TRAILER}: yes" in the head commit this looks like a mistake (an emptied or half-pushed repository): ${allowRemovalHint()}`;
}
