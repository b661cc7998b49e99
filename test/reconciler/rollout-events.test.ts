import { describe, expect, it } from 'vitest';
import { rolloutEvents } from '../../src/reconciler/rollout-events.js';
import { summaryEvents } from '../../src/hub/events.js';
import { rollout, summary, wave } from '../hub/hub-fixture.js';

const R = 'c3'.repeat(20);
const S = 'd4'.repeat(20);

describe('rolloutEvents', () => {
  const progressing = (currentWave: number) => rollout('web', R, 'Progressing', [wave(1, 10, { healthy: 1 }), wave(2, 100, { pending: 9 })], { currentWave, startedAt: 5_000 });

  it('announces a wave that started, baking, a halt and completion once each, and nothing when nothing changed', () => {
    const w1 = progressing(1);
    expect(rolloutEvents('eu', w1, null, 1_000).map((e) => [e.type, e.wave])).toEqual([['rollout.wave-started', 1]]);
    expect(rolloutEvents('eu', w1, w1, 1_000)).toEqual([]);
    const baking = { ...w1, state: 'Baking' as const };
    expect(rolloutEvents('eu', baking, w1, 1_000).map((e) => e.type)).toEqual(['rollout.baking']);
    expect(rolloutEvents('eu', baking, baking, 1_000)).toEqual([]);
    const w2 = progressing(2);
    expect(rolloutEvents('eu', w2, baking, 1_000).map((e) => [e.type, e.wave])).toEqual([['rollout.wave-started', 2]]);
    const halted = { ...w2, state: 'Halted' as const, halted: { reason: '3 of 5 failed', devices: ['a'], at: 1 } };
    const [event] = rolloutEvents('eu', halted, w2, 1_000);
    expect(event).toMatchObject({ type: 'rollout.halted', region: 'eu', deployment: 'web', app: 'web', version: '2.0.0', revision: R });
    expect(event!.message).toContain('3 of 5 failed');
    expect(rolloutEvents('eu', { ...w2, state: 'Complete' }, w2, 1_000).map((e) => e.type)).toEqual(['rollout.complete']);
  });

  it('a new version starts over: its first wave is announced even when the old one was further', () => {
    const old = rollout('web', R, 'Complete', [wave(1, 10, {}), wave(2, 100, {})], { currentWave: 2, startedAt: 5_000 });
    const next = rollout('web', S, 'Progressing', [wave(1, 10, {}), wave(2, 100, {})], { currentWave: 1, version: '3.0.0', startedAt: 6_000 });
    expect(rolloutEvents('eu', next, old, 1_000).map((e) => [e.type, e.version, e.wave])).toEqual([['rollout.wave-started', '3.0.0', 1]]);
  });

  it('after a restart, a rollout that started before it is the baseline, not news', () => {
    expect(rolloutEvents('eu', progressing(2), null, 10_000)).toEqual([]);
    expect(rolloutEvents('eu', progressing(2), null, Infinity)).toEqual([]);
  });
});

describe('summaryEvents (the hub relay)', () => {
  it('relays an applied revision with its subject, a refusal once, and rollout transitions; a first summary is the baseline', () => {
    const first = summary('eu', { revision: { attempted: R, applied: R, error: null }, rollouts: [] });
    expect(summaryEvents(null, first, 1)).toEqual([]);
    const applied = summary('eu', { revision: { attempted: S, applied: S, error: null, subject: 'web 2.0.0', author: 'A <a@x>' }, rollouts: [rollout('web', S, 'Progressing', [wave(1, 50, {})], { currentWave: 1 })] });
    expect(summaryEvents(first, applied, 7).map((e) => [e.type, e.revision, e.subject ?? null, e.at])).toEqual([
      ['revision.applied', S, 'web 2.0.0', 7],
      ['rollout.wave-started', S, null, 7],
    ]);
    const refusedRev = 'e5'.repeat(20);
    const refused = summary('eu', { revision: { attempted: refusedRev, applied: S, error: ['x.yaml:1:1: bad'], subject: 'web 2.0.0', refused: { subject: 'oops', author: 'B <b@x>' } }, rollouts: applied.rollouts });
    expect(summaryEvents(applied, refused, 8).map((e) => [e.type, e.revision, e.subject])).toEqual([['revision.refused', refusedRev, 'oops']]);
    expect(summaryEvents(refused, { ...refused, sequence: refused.sequence + 1 }, 9)).toEqual([]);
  });
});
