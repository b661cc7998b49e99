import { describe, expect, it } from 'vitest';
import type { WindowSpec } from '../../../src/desired/model.js';
import { checkWindow } from '../../../src/plan/rollout/window.js';
import { RolloutSim } from './rollout-sim.js';

const at = (iso: string) => Date.parse(iso);
const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code ?? 'no code';
  }
  return 'no error';
};
const nightly: WindowSpec = { schedule: '0 2 * * *', duration: '2h', timezone: 'Europe/Berlin' };

describe('checkWindow', () => {
  it('is open from the scheduled local time for duration (Berlin summer time, UTC+2)', () => {
    expect(checkWindow(nightly, at('2024-06-10T00:30:00Z'))).toEqual({
      open: true,
      openedAt: at('2024-06-10T00:00:00Z'),
      closesAt: at('2024-06-10T02:00:00Z'),
      opensAt: null,
    });
    expect(checkWindow(nightly, at('2024-06-10T03:00:00Z'))).toEqual({
      open: false,
      openedAt: null,
      closesAt: null,
      opensAt: at('2024-06-11T00:00:00Z'),
    });
  });

  it('opens at the start millisecond and closes at start + duration', () => {
    expect(checkWindow(nightly, at('2024-06-09T23:59:59.999Z')).open).toBe(false); // 01:59:59.999 Berlin
    expect(checkWindow(nightly, at('2024-06-09T23:59:59.999Z')).opensAt).toBe(at('2024-06-10T00:00:00Z'));
    expect(checkWindow(nightly, at('2024-06-10T00:00:00Z')).open).toBe(true); // 02:00 Berlin
    expect(checkWindow(nightly, at('2024-06-10T01:59:59.999Z')).open).toBe(true); // 03:59:59.999
    expect(checkWindow(nightly, at('2024-06-10T02:00:00Z')).open).toBe(false); // 04:00
  });

  it('follows the zone in winter (UTC+1) and defaults to UTC', () => {
    expect(checkWindow(nightly, at('2024-01-15T01:30:00Z')).open).toBe(true); // 02:30 CET
    expect(checkWindow(nightly, at('2024-01-15T00:30:00Z')).open).toBe(false); // 01:30 CET
    const utc = { schedule: '0 2 * * *', duration: '2h' };
    expect(checkWindow(utc, at('2024-01-15T01:30:00Z')).open).toBe(false);
    expect(checkWindow(utc, at('2024-01-15T02:30:00Z')).open).toBe(true);
  });

  it('opens at the jump when clocks spring forward over the start (2024-03-31, 02:00 does not exist in Berlin)', () => {
    // 01:59:59.999 CET, then the clock shows 03:00 CEST (01:00Z): the window opens there and closes at 04:00 CEST.
    const beforeJump = checkWindow(nightly, at('2024-03-31T00:59:59.999Z'));
    expect(beforeJump).toMatchObject({ open: false, opensAt: at('2024-03-31T01:00:00Z') });
    expect(checkWindow(nightly, at('2024-03-31T01:00:00Z'))).toEqual({
      open: true,
      openedAt: at('2024-03-31T01:00:00Z'),
      closesAt: at('2024-03-31T02:00:00Z'),
      opensAt: null,
    });
    expect(checkWindow(nightly, at('2024-03-31T01:59:59.999Z')).open).toBe(true);
    expect(checkWindow(nightly, at('2024-03-31T02:00:00Z')).open).toBe(false);
    // A start inside the gap (02:30) opens at the jump too, and closes at 03:30 CEST.
    const halfPast = { ...nightly, schedule: '30 2 * * *', duration: '1h' };
    expect(checkWindow(halfPast, at('2024-03-31T01:00:00Z'))).toMatchObject({ open: true, openedAt: at('2024-03-31T01:00:00Z'), closesAt: at('2024-03-31T01:30:00Z') });
    expect(checkWindow(halfPast, at('2024-03-31T01:30:00Z')).open).toBe(false);
    // A window lying wholly inside the skipped hour (02:30-03:00) does not happen that night.
    const inGap = { ...nightly, schedule: '30 2 * * *', duration: '30m' };
    expect(checkWindow(inGap, at('2024-03-31T01:00:00Z'))).toMatchObject({ open: false, opensAt: at('2024-04-01T00:30:00Z') });
  });

  it('covers the repeated hour when clocks fall back (2024-10-27: 02:00-03:00 happens twice in Berlin)', () => {
    // 02:00 CEST = 00:00Z; 04:00 CET = 03:00Z: open for three real hours, as the wall clock shows.
    expect(checkWindow(nightly, at('2024-10-26T23:59:59.999Z')).open).toBe(false);
    expect(checkWindow(nightly, at('2024-10-27T00:00:00Z'))).toMatchObject({ open: true, openedAt: at('2024-10-27T00:00:00Z'), closesAt: at('2024-10-27T03:00:00Z') });
    expect(checkWindow(nightly, at('2024-10-27T01:30:00Z')).open).toBe(true); // 02:30 CET, the second time round
    expect(checkWindow(nightly, at('2024-10-27T01:30:00Z')).openedAt).toBe(at('2024-10-27T00:00:00Z'));
    expect(checkWindow(nightly, at('2024-10-27T02:59:59.999Z')).open).toBe(true); // 03:59:59.999 CET
    expect(checkWindow(nightly, at('2024-10-27T03:00:00Z')).open).toBe(false); // 04:00 CET
  });

  it('handles a window that crosses midnight from a weekday-only schedule (Asia/Tokyo, no DST)', () => {
    const weekdayNights = { schedule: '0 22 * * 1-5', duration: '4h', timezone: 'Asia/Tokyo' };
    // Friday 2024-06-14 22:00 JST = 13:00Z; Saturday 01:00 JST is still inside Friday's window.
    expect(checkWindow(weekdayNights, at('2024-06-14T16:00:00Z')).open).toBe(true);
    // Saturday 22:00 JST: no window on weekends; the next one opens Monday 22:00 JST.
    expect(checkWindow(weekdayNights, at('2024-06-15T13:00:00Z'))).toMatchObject({ open: false, opensAt: at('2024-06-17T13:00:00Z') });
  });

  it('handles America/New_York falling back (2024-11-03: 01:00-02:00 happens twice)', () => {
    const early = { schedule: '30 1 * * *', duration: '1h', timezone: 'America/New_York' };
    // 01:30 EDT = 05:30Z, window until 02:30 wall time = 07:30Z (EST).
    expect(checkWindow(early, at('2024-11-03T05:30:00Z'))).toMatchObject({ open: true, openedAt: at('2024-11-03T05:30:00Z'), closesAt: at('2024-11-03T07:30:00Z') });
    expect(checkWindow(early, at('2024-11-03T07:29:59.999Z')).open).toBe(true);
    expect(checkWindow(early, at('2024-11-03T07:30:00Z')).open).toBe(false);
  });

  it('refuses settings the schema should have refused, saying where', () => {
    const bad = (window: WindowSpec) => () => checkWindow(window, 0, 'Deployment web');
    expect(bad({ schedule: '0 2 * * *', duration: '2h', timezone: 'Mars/Olympus' })).toThrow(/Deployment web: rollout.window.timezone "Mars\/Olympus"/);
    expect(bad({ schedule: '0 0 2 * * *', duration: '2h' })).toThrow(/five fields/);
    expect(bad({ schedule: '0 25 * * *', duration: '2h' })).toThrow(/rollout.window.schedule "0 25 \* \* \*"/);
    expect(bad({ schedule: '0 2 * * *', duration: 'two hours' })).toThrow(/rollout.window.duration/);
    expect(codeOf(bad({ schedule: '0 25 * * *', duration: '2h' }))).toBe('bad-rollout');
    expect(codeOf(bad({ schedule: '0 2 * * *', duration: '2h', timezone: 'Nowhere' }))).toBe('bad-rollout');
  });
});

describe('planRollouts: maintenance window', () => {
  // 02:00-04:00 Berlin = 00:00Z-02:00Z in June.
  const rollout = { maxUnavailable: 1, window: nightly };
  const noon = at('2024-06-10T10:00:00Z');

  it('releases nothing outside the window and says when it opens', () => {
    const sim = new RolloutSim({ version: '2.0', rollout }).add(1, 'a', 'b');
    const pass = sim.pass(noon);
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.status).toMatchObject({
      state: 'WaitingForWindow',
      window: { open: false, opensAt: at('2024-06-11T00:00:00Z') },
      message: '2 devices wait for the maintenance window, which opens at 2024-06-11T00:00:00.000Z',
    });
  });

  it('releases inside the window; devices already updating keep going after it closes; the rest wait', () => {
    const sim = new RolloutSim({ version: '2.0', rollout }).add(1, 'a', 'b', 'c');
    let pass = sim.pass(at('2024-06-11T00:30:00Z'));
    expect(pass.newlyReleased).toEqual(['a']);
    expect(pass.status).toMatchObject({ state: 'Progressing', window: { open: true, closesAt: at('2024-06-11T02:00:00Z') } });
    sim.healthy('a');
    pass = sim.pass(at('2024-06-11T01:59:59.999Z'));
    expect(pass.newlyReleased).toEqual(['b']);
    // The window closes while b updates: b stays released, c waits for the next night.
    pass = sim.pass(at('2024-06-11T02:00:00Z'));
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.released).toEqual(['a', 'b']);
    expect(pass.status.state).toBe('WaitingForWindow');
    sim.healthy('b');
    pass = sim.pass(at('2024-06-11T03:00:00Z'));
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.status.waves[0]).toMatchObject({ healthy: 2, pending: 1 });
    pass = sim.pass(at('2024-06-12T00:00:00Z'));
    expect(pass.newlyReleased).toEqual(['c']);
  });

  it('is Progressing, not WaitingForWindow, while only already-handed devices are busy', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { window: nightly } }).add(1, 'a');
    sim.pass(at('2024-06-11T00:30:00Z'));
    const pass = sim.pass(at('2024-06-11T05:00:00Z'));
    expect(pass.status.state).toBe('Progressing');
  });

  it('bakes across the closed window, then waits for it before starting the next wave', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100], bakeTime: '1h', window: nightly } }).add(1, 'a').add(2, 'b');
    expect(sim.pass(at('2024-06-11T01:30:00Z')).newlyReleased).toEqual(['a']);
    sim.healthy('a');
    expect(sim.pass(at('2024-06-11T01:45:00Z')).status).toMatchObject({ state: 'Baking', nextWaveAt: at('2024-06-11T02:45:00Z') });
    const pass = sim.pass(at('2024-06-11T02:45:00Z'));
    expect(pass.status).toMatchObject({ state: 'WaitingForWindow', currentWave: 2 });
    expect(pass.newlyReleased).toEqual([]);
    expect(sim.pass(at('2024-06-12T00:00:00Z') - 1).newlyReleased).toEqual([]);
    expect(sim.pass(at('2024-06-12T00:00:00Z')).newlyReleased).toEqual(['b']);
  });
});
