import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { FastifyReply } from 'fastify';
import type { DeviceId } from '../../core/types.js';
import type { StateStore } from '../../reconciler/state-store.js';
import { DesiredWaiter, type DesiredWatchers } from './desired-watchers.js';

/**
 * Long polls of `GET .../desired?wait=N`: a request is held until its device's desired state changes
 * or N seconds pass, answered from a timer or a notify, so no promise or async frame stays alive per
 * waiting device, only its HeldPoll. A device that hangs up stops costing anything at once.
 */

export function etagOf(generation: number): string {
  return `"${generation}"`;
}

export function isUnchanged(known: string[], generation: number): boolean {
  return known.includes('*') || known.includes(etagOf(generation));
}

/** Parses an If-None-Match header into bare entity tags (`*` included). */
export function entityTags(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  const text = Array.isArray(header) ? header.join(',') : header;
  return text.split(',').map((tag) => tag.trim().replace(/^W\//, '')).filter((tag) => tag !== '');
}

/** How long closing the server waits for held long polls to be answered. */
const CLOSE_DRAIN_MS = 2_000;

/** What held polls share: one object per server, so a poll carries a single reference. */
export interface LongPolls {
  /** Held polls whose responses are not closed yet. */
  open: number;
  /** Called when `open` drops to 0 while the server is closing. */
  drained: (() => void) | null;
  readonly store: StateStore;
  readonly watchers: DesiredWatchers;
  readonly clock: () => number;
  readonly generationOf: (id: DeviceId) => number;
  readonly answer: (reply: FastifyReply, id: DeviceId, known: string[], generation: number, waited: boolean) => void;
}

/** A `GET .../desired?wait=N` held until its device's desired state changes or N seconds pass. */
class HeldPoll extends DesiredWaiter {
  constructor(
    deviceId: DeviceId,
    knownGeneration: number,
    readonly reply: FastifyReply,
    /** The entity tags of If-None-Match. */
    readonly known: string[],
    /** performance.now() at which the device gets its 304. */
    readonly deadline: number,
    readonly polls: LongPolls,
  ) {
    super(deviceId, knownGeneration);
  }

  /** Notified, timed out or closing: answer, or wait on when the device's state has not really changed. */
  wake(): void {
    const { polls } = this;
    // Hung up while queued to be woken (notify wakes in batches): nothing to answer.
    if (this.reply.raw.destroyed || this.reply.raw.closed) return;
    try {
      const generation = polls.generationOf(this.deviceId);
      if (isUnchanged(this.known, generation) && !polls.watchers.isClosed) {
        this.knownGeneration = generation;
        const remaining = this.deadline - performance.now();
        if (remaining > 0 && polls.watchers.hold(this, remaining)) return;
      }
      polls.answer(this.reply, this.deviceId, this.known, generation, true);
    } catch (err) {
      void this.reply.send(err as Error);
    }
  }
}

const heldPollKey = Symbol('cascade.heldPoll');
type PollResponse = ServerResponse & { [heldPollKey]?: HeldPoll | undefined };

/** The response of a held poll closed: answered, or its client hung up (then stop waiting). Shared by all polls. */
function onPollResponseClose(this: PollResponse): void {
  const poll = this[heldPollKey];
  if (!poll) return;
  this[heldPollKey] = undefined;
  const { polls } = poll;
  if (!this.writableEnded) {
    polls.watchers.cancel(poll);
    try {
      polls.store.markSeen(poll.deviceId, polls.clock());
    } catch (err) {
      poll.reply.log.warn({ err, deviceId: poll.deviceId }, 'cannot record when the device was last seen');
    }
  }
  polls.open--;
  if (polls.open === 0 && polls.drained) {
    polls.drained();
    polls.drained = null;
  }
}

/** Holds a poll until the device's state moves past `generation` or `waitMs` passes; false when it cannot be held. */
export function holdLongPoll(polls: LongPolls, id: DeviceId, generation: number, reply: FastifyReply, known: string[], waitMs: number): boolean {
  const poll = new HeldPoll(id, generation, reply, known, performance.now() + waitMs, polls);
  if (!polls.watchers.hold(poll, waitMs)) return false;
  // Stop waiting as soon as the device hangs up, so abandoned polls cost nothing.
  (reply.raw as PollResponse)[heldPollKey] = poll;
  reply.raw.on('close', onPollResponseClose);
  polls.open++;
  return true;
}

/** Closing: answers every held poll (304) and waits, at most CLOSE_DRAIN_MS, for the answers to go out. */
export async function drainLongPolls(polls: LongPolls): Promise<void> {
  polls.watchers.closeAll();
  if (polls.open === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    new Promise<void>((resolve) => (polls.drained = resolve)),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_DRAIN_MS))),
  ]);
  clearTimeout(timer);
}
