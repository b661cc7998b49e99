import type { DeviceId } from '../../core/types.js';
import { alreadyThere, classifyDevice } from './classify.js';
import { DEFAULT_WAVE_PERCENTS } from './defaults.js';
import {
  beginDeployment,
  decideDeployment,
  noSteps,
  planRolloutsInSteps,
  type BegunDeployment,
  type DeploymentTally,
  type ReleaseCandidate,
  type StepBudget,
} from './plan-rollouts.js';
import type { DeploymentRolloutStatus, DeviceRolloutState, RolloutDeploymentInput, RolloutDeviceInput, RolloutState, WaveStatus } from './types.js';

/** What a tracker knows of its Deployment: everything of a RolloutDeploymentInput but its devices. */
export type TrackedDeployment = Omit<RolloutDeploymentInput, 'devices'>;

/** Where one device stands, as of the last input the tracker was given for it. */
interface Slot {
  /** Clamped to the rollout's waves. */
  wave: number;
  cls: DeviceRolloutState;
  /** Past this instant its class may change by the clock alone (it turns offline); Infinity when it cannot. */
  deadline: number;
  /** Handed the version or running it healthy (alreadyThere): released whatever the rules say. */
  there: boolean;
  /** Counted as attempted (rule 4): online, handed the version. */
  attempted: boolean;
  /** Has reported at least once (lastSeen set). */
  seen: boolean;
  /** Never reported and no enrolment time: its class depends on when the rollout started. */
  sinceBound: boolean;
  /**
   * The instant of the device's entry in the deadline heap (Infinity: none). At most one entry per
   * device: a deadline that moves later keeps the earlier entry, which re-queues it when it comes up.
   */
  queued: number;
}

/** One pass of a tracked Deployment: what planRollouts gives for it, with the releases beyond the devices already there. */
export interface TrackedPlan {
  state: RolloutState;
  status: DeploymentRolloutStatus;
  /** Devices released by this pass that are not there yet (not handed the version, not running it healthy). */
  chosen: ReadonlySet<DeviceId>;
}

/** A pass's options: the region's offline clock, whether an operator asked to retry, how many devices a full replan reads between pauses. */
export interface TrackerPlanOptions {
  offlineAfterMs: number;
  retryAsked?: boolean;
  stepDevices?: number;
}

/** A device's current rollout input, read from wherever the caller keeps it; undefined when it left the Deployment. */
export type DeviceView = (id: DeviceId) => RolloutDeviceInput | undefined;

/**
 * The rollout engine for one Deployment whose devices are counted as they change instead of all on
 * every pass: the caller gives it each device's input when it changes (`set`), and a pass (`plan`)
 * costs what changed since the last one, not the Deployment's size. It gives what planRollouts gives
 * for the same inputs (the rules are the same code: decideDeployment), which the property tests check
 * pass by pass against planRollouts.
 *
 * Time is the one input that changes without the caller: a device turns offline when it has been
 * silent for offlineAfter. Each device's next such instant is kept in a heap; a pass re-reads the
 * devices whose instant has passed through `view` (a connected device is seen now and stays online).
 * The rare cases that need every device (an operator's retry, settings that stall the Deployment, a
 * clock that went back) are planned by planRollouts over every device read through `view`.
 *
 * Pure: no clock, no I/O; `now` is given to each call.
 */
export class DeploymentTracker {
  private readonly slots = new Map<DeviceId, Slot>();
  private readonly counts: WaveStatus[];
  private readonly failed = new Set<DeviceId>();
  /** Pending devices, per wave. */
  private readonly pending: Array<Set<DeviceId>>;
  /** Devices not there yet: what an immediate rollback releases. */
  private readonly notThere = new Set<DeviceId>();
  private attempted = 0;
  private seen = 0;
  private sinceBound = 0;
  private readonly deadlines = new DeadlineHeap();
  private chosen: ReadonlySet<DeviceId> = new Set();
  private lastNow = -Infinity;

  constructor(
    readonly deployment: TrackedDeployment,
    private offlineAfterMs: number,
    /** When the rollout started (its state's startedAt): a device with neither report nor enrolment time is `new` from then. */
    private since: number,
  ) {
    const percents = Array.isArray(deployment.rollout.waves) && deployment.rollout.waves.length > 0 ? deployment.rollout.waves : DEFAULT_WAVE_PERCENTS;
    this.counts = percents.map((percent, i) => ({ wave: i + 1, percent, devices: 0, new: 0, pending: 0, updating: 0, healthy: 0, failed: 0, offline: 0 }));
    this.pending = percents.map(() => new Set<DeviceId>());
  }

  /** Devices of the Deployment. */
  get size(): number {
    return this.slots.size;
  }

  has(id: DeviceId): boolean {
    return this.slots.has(id);
  }

  ids(): IterableIterator<DeviceId> {
    return this.slots.keys();
  }

  /** Whether the last plan releases the device: there already, or chosen by it. */
  isReleased(id: DeviceId): boolean {
    return this.isThere(id) || this.chosen.has(id);
  }

  /** Handed the version or running it healthy, as of its last input: released whatever the rules say. */
  isThere(id: DeviceId): boolean {
    return this.slots.get(id)?.there === true;
  }

  /** The earliest instant a device may turn offline by the clock alone (Infinity: none can). */
  nextDeadline(): number {
    return this.deadlines.peek();
  }

  /** The device's input changed (or it joined the Deployment); undefined: it left. */
  set(id: DeviceId, input: RolloutDeviceInput | undefined, now: number): void {
    // Classified at `now`: a later plan at an earlier instant reads every device again.
    if (now > this.lastNow) this.lastNow = now;
    const slot = this.slots.get(id);
    if (slot) this.unaccount(id, slot);
    if (!input) {
      if (slot) this.slots.delete(id);
      return;
    }
    const next = slot ?? ({ queued: Infinity } as Slot);
    this.classify(next, input, now);
    if (!slot) this.slots.set(id, next);
    this.account(id, next);
    if (next.deadline < next.queued) {
      this.deadlines.push(next.deadline, id);
      next.queued = next.deadline;
      // Entries left behind (a device gone, a deadline moved earlier) are dropped when they come up; rebuilt when they outnumber the devices.
      if (this.deadlines.size > 2 * this.slots.size + 1024) this.compactDeadlines();
    }
  }

  private compactDeadlines(): void {
    this.deadlines.clear();
    for (const [id, slot] of this.slots) {
      slot.queued = slot.deadline;
      if (slot.deadline !== Infinity) this.deadlines.push(slot.deadline, id);
    }
  }

  /**
   * One pass: the Deployment's state and status after it and the devices it releases, as
   * planRollouts would give them for the devices' current inputs. A generator only for its rare full
   * replans (it pauses every `stepDevices` devices); the usual pass costs what changed.
   */
  *plan(now: number, revision: string, previous: RolloutState | undefined, view: DeviceView, options: TrackerPlanOptions): Generator<void, TrackedPlan, void> {
    if (now < this.lastNow || options.offlineAfterMs !== this.offlineAfterMs) {
      // The clock went back (offline devices may be online again) or the offline clock changed: read every device again.
      this.offlineAfterMs = options.offlineAfterMs;
      this.refreshAll(view, now);
    }
    this.lastNow = now;
    this.expire(view, now);

    let begun: BegunDeployment | null;
    try {
      begun = beginDeployment(this.deployment, this.slots.size, now, revision, previous);
    } catch {
      begun = null; // Stalled: planRollouts says so, with its problem.
    }
    if (!begun || (options.retryAsked && begun.state.halted && !begun.fresh)) {
      return yield* this.planFully(now, revision, previous, view, options);
    }
    if (begun.state.startedAt !== this.since) {
      this.since = begun.state.startedAt;
      if (this.sinceBound > 0) this.refreshAll(view, now);
    }
    const decided = yield* decideDeployment(this.deployment, begun, this.tally(), now, noSteps());
    this.chosen = new Set(decided.chosen);
    return { state: decided.state, status: decided.status, chosen: this.chosen };
  }

  /**
   * Checks the counts against a recount of `members` read through `view` now (the periodic resync):
   * each difference is a bug of whoever feeds the tracker (a change it was not told of). Empty when they agree.
   */
  verify(members: Iterable<DeviceId>, view: DeviceView, now: number, pending: (id: DeviceId) => boolean = () => false): string[] {
    this.expire(view, now);
    const differences: string[] = [];
    // The counts kept as devices changed, against a count of the devices as the tracker holds them.
    const own = new DeploymentTracker(this.deployment, this.offlineAfterMs, this.since);
    for (const [id, slot] of this.slots) own.account(id, slot);
    if (this.aggregates() !== own.aggregates()) differences.push(`counted ${this.aggregates()}, recounted from its devices ${own.aggregates()}`);
    // The devices as the tracker holds them, against the devices as they are. A change the next pass will
    // bring (`pending`: a device seen again after a silence, between passes) is no difference.
    const fresh = new DeploymentTracker(this.deployment, this.offlineAfterMs, this.since);
    for (const id of members) if (!pending(id)) fresh.set(id, view(id), now);
    for (const id of fresh.slots.keys()) if (!this.slots.has(id)) differences.push(`device ${id} is missing`);
    for (const id of this.slots.keys()) if (!pending(id) && !fresh.slots.has(id)) differences.push(`device ${id} is counted but no longer belongs`);
    for (const [id, slot] of fresh.slots) {
      const mine = this.slots.get(id);
      if (mine && (mine.cls !== slot.cls || mine.there !== slot.there || mine.wave !== slot.wave || mine.attempted !== slot.attempted || mine.seen !== slot.seen)) {
        differences.push(`device ${id} is counted ${mine.cls} (wave ${mine.wave}), recounted ${slot.cls} (wave ${slot.wave})`);
      }
    }
    return differences;
  }

  private aggregates(): string {
    return JSON.stringify({ counts: this.counts, attempted: this.attempted, seen: this.seen, failed: this.failed.size, notThere: this.notThere.size, pending: this.pending.map((p) => p.size) });
  }

  /** Devices whose silence passed offlineAfter since they were last read: read again (connected ones stay online). */
  private expire(view: DeviceView, now: number): void {
    while (this.deadlines.peek() < now) {
      const { at, id } = this.deadlines.pop();
      const slot = this.slots.get(id);
      if (!slot || slot.queued !== at) continue;
      slot.queued = Infinity;
      if (slot.deadline < now) this.set(id, view(id), now);
      else if (slot.deadline !== Infinity) {
        // Seen again since it was queued: queued again for its later deadline.
        this.deadlines.push(slot.deadline, id);
        slot.queued = slot.deadline;
      }
    }
  }

  /** planRollouts over every device, read through `view`: an operator's retry, a Stalled Deployment. */
  private *planFully(now: number, revision: string, previous: RolloutState | undefined, view: DeviceView, options: TrackerPlanOptions): Generator<void, TrackedPlan, void> {
    const devices: RolloutDeviceInput[] = [];
    for (const id of this.slots.keys()) {
      const device = view(id);
      if (device) devices.push(device);
    }
    const name = this.deployment.deployment;
    const plan = yield* planRolloutsInSteps(
      {
        now,
        offlineAfterMs: options.offlineAfterMs,
        revision,
        deployments: [{ ...this.deployment, devices }],
        previous: previous ? new Map([[name, previous]]) : new Map(),
        retries: options.retryAsked ? new Map([[name, now]]) : undefined,
      },
      options.stepDevices,
    );
    const chosen = new Set<DeviceId>();
    for (const id of plan.release.get(name)!) if (this.slots.get(id)?.there !== true) chosen.add(id);
    this.chosen = chosen;
    return { state: plan.states.get(name)!, status: plan.statuses[0]!, chosen };
  }

  /** The counts as the rules read them; a copy, for the rules move released devices in it. */
  private tally(): DeploymentTally {
    const { slots, pending, notThere, failed } = this;
    return {
      counts: this.counts.map((count) => ({ ...count })),
      attempted: this.attempted,
      anySeen: this.seen > 0,
      failedIds: () => [...failed],
      *candidates(upToWave: number, immediate: boolean, _budget: StepBudget) {
        const out: ReleaseCandidate[] = [];
        if (immediate) {
          for (const id of notThere) {
            const slot = slots.get(id)!;
            out.push({ id, wave: slot.wave, pending: slot.cls === 'pending' });
          }
        } else {
          for (let wave = 1; wave <= Math.min(upToWave, pending.length); wave++) for (const id of pending[wave - 1]!) out.push({ id, wave, pending: true });
        }
        return out;
      },
    };
  }

  private refreshAll(view: DeviceView, now: number): void {
    for (const id of [...this.slots.keys()]) this.set(id, view(id), now);
  }

  private classify(slot: Slot, input: RolloutDeviceInput, now: number): void {
    const version = this.deployment.version;
    const waves = this.counts.length;
    slot.wave = !Number.isFinite(input.wave) || input.wave < 1 ? 1 : Math.min(Math.floor(input.wave), waves);
    slot.cls = classifyDevice(input, version, now, this.offlineAfterMs, this.since);
    slot.sinceBound = input.lastSeen === null && input.enrolledAt === undefined;
    const from = input.lastSeen ?? input.enrolledAt ?? this.since;
    slot.deadline = slot.cls === 'offline' ? Infinity : from + this.offlineAfterMs;
    slot.there = alreadyThere(input, version);
    slot.attempted = slot.cls !== 'offline' && slot.cls !== 'new' && input.handedVersion === version;
    slot.seen = input.lastSeen !== null;
  }

  private account(id: DeviceId, slot: Slot): void {
    const count = this.counts[slot.wave - 1]!;
    count.devices++;
    count[slot.cls]++;
    if (slot.cls === 'failed') this.failed.add(id);
    else if (slot.cls === 'pending') this.pending[slot.wave - 1]!.add(id);
    if (!slot.there) this.notThere.add(id);
    if (slot.attempted) this.attempted++;
    if (slot.seen) this.seen++;
    if (slot.sinceBound) this.sinceBound++;
  }

  private unaccount(id: DeviceId, slot: Slot): void {
    const count = this.counts[slot.wave - 1]!;
    count.devices--;
    count[slot.cls]--;
    if (slot.cls === 'failed') this.failed.delete(id);
    else if (slot.cls === 'pending') this.pending[slot.wave - 1]!.delete(id);
    if (!slot.there) this.notThere.delete(id);
    if (slot.attempted) this.attempted--;
    if (slot.seen) this.seen--;
    if (slot.sinceBound) this.sinceBound--;
  }
}

/** A binary min-heap of (instant, device); stale entries are skipped by the caller (lazy deletion). */
class DeadlineHeap {
  private readonly at: number[] = [];
  private readonly ids: DeviceId[] = [];

  get size(): number {
    return this.at.length;
  }

  peek(): number {
    return this.at.length > 0 ? this.at[0]! : Infinity;
  }

  clear(): void {
    this.at.length = 0;
    this.ids.length = 0;
  }

  push(at: number, id: DeviceId): void {
    const { at: times, ids } = this;
    let i = times.length;
    times.push(at);
    ids.push(id);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (times[parent]! <= at) break;
      times[i] = times[parent]!;
      ids[i] = ids[parent]!;
      i = parent;
    }
    times[i] = at;
    ids[i] = id;
  }

  pop(): { at: number; id: DeviceId } {
    const { at: times, ids } = this;
    const top = { at: times[0]!, id: ids[0]! };
    const lastAt = times.pop()!;
    const lastId = ids.pop()!;
    const n = times.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= n) break;
        const child = left + 1 < n && times[left + 1]! < times[left]! ? left + 1 : left;
        if (times[child]! >= lastAt) break;
        times[i] = times[child]!;
        ids[i] = ids[child]!;
        i = child;
      }
      times[i] = lastAt;
      ids[i] = lastId;
    }
    return top;
  }
}
