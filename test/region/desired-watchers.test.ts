import { describe, expect, it } from 'vitest';
import { DesiredWaiter, DesiredWatchers } from '../../src/region/routes/desired-watchers.js';

class Recorder extends DesiredWaiter {
  constructor(
    deviceId: string,
    knownGeneration: number,
    private readonly woken: string[],
  ) {
    super(deviceId, knownGeneration);
  }

  wake(): void {
    this.woken.push(this.deviceId);
  }
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('DesiredWatchers.notify', () => {
  it('wakes a large notify a batch per turn of the event loop, in order, all taken off at once', async () => {
    const generations = new Map<string, number>();
    const watchers = new DesiredWatchers((id) => generations.get(id) ?? 0, { wakeBatch: 100 });
    const woken: string[] = [];
    const ids = Array.from({ length: 250 }, (_, i) => `dev-${i}`);
    for (const id of ids) expect(watchers.hold(new Recorder(id, 0, woken), 60_000)).toBe(true);
    for (const id of ids) generations.set(id, 1);

    watchers.notify(ids);
    // Taken off at once: the devices count as waiting no more, and a new hold waits for the next change.
    expect(watchers.size).toBe(0);
    expect(watchers.isWaiting('dev-0')).toBe(false);
    expect(woken).toHaveLength(100);
    expect(watchers.pendingWakes).toBe(150);
    await turn();
    expect(woken).toHaveLength(200);
    await turn();
    expect(woken).toEqual(ids);
    expect(watchers.pendingWakes).toBe(0);
  });

  it('a small notify wakes at once', () => {
    const watchers = new DesiredWatchers(undefined, { wakeBatch: 100 });
    const woken: string[] = [];
    watchers.hold(new Recorder('dev-1', 0, woken), 60_000);
    watchers.notify(['dev-1', 'dev-2']);
    expect(woken).toEqual(['dev-1']);
  });

  it('a second notify while a batch is queued joins the queue after it', async () => {
    const watchers = new DesiredWatchers(undefined, { wakeBatch: 2 });
    const woken: string[] = [];
    for (const id of ['a', 'b', 'c', 'd']) watchers.hold(new Recorder(id, 0, woken), 60_000);
    watchers.notify(['a', 'b', 'c']);
    expect(woken).toEqual(['a', 'b']);
    watchers.notify(['d']);
    expect(woken).toEqual(['a', 'b']);
    await turn();
    expect(woken).toEqual(['a', 'b', 'c', 'd']);
  });

  it('closeAll wakes the queued waiters with the held ones', () => {
    const watchers = new DesiredWatchers(undefined, { wakeBatch: 1 });
    const woken: string[] = [];
    for (const id of ['a', 'b', 'c']) watchers.hold(new Recorder(id, 0, woken), 60_000);
    watchers.notify(['a', 'b']);
    expect(woken).toEqual(['a']);
    watchers.closeAll();
    expect(woken.sort()).toEqual(['a', 'b', 'c']);
    expect(watchers.pendingWakes).toBe(0);
  });
});
