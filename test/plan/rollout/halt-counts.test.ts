import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { renderRollout, waveLine } from '../../../src/cli/render/render-status.js';
import { describeHalt, sumWaves } from '../../../src/plan/rollout/totals.js';
import type { DeploymentRolloutStatus, WaveStatus } from '../../../src/plan/rollout/types.js';
import { rolloutCounts } from '../../../src/hub/views.js';
import { MINUTE, RolloutSim, T0, ids } from './rollout-sim.js';

/** Issue 13: counts agree everywhere. The halt line says what was true at the halt and what is true now; "now" is the wave rows' own sum. */

const count = fc.nat({ max: 50 });
const waveArb = (wave: number): fc.Arbitrary<WaveStatus> =>
  fc.record({ pending: count, updating: count, healthy: count, failed: count, offline: count, new: count }).map((c) => ({
    wave,
    percent: wave * 10,
    devices: c.pending + c.updating + c.healthy + c.failed + c.offline + c.new,
    ...c,
  }));

function rollout(waves: WaveStatus[], halted: { failed: number; attempted: number }): DeploymentRolloutStatus {
  return {
    deployment: 'web',
    app: 'web',
    version: '2.0.0',
    revision: 'a'.repeat(40),
    state: 'Halted',
    currentWave: 1,
    waves,
    rollback: false,
    startedAt: 0,
    message: 'halted',
    halted: { reason: `${halted.failed} of ${halted.attempted} attempted devices failed`, devices: [], at: 0, ...halted },
  };
}

/** The figures a line states, by name: "3 failed, 1 healthy" -> { failed: 3, healthy: 1 }. */
function figures(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  // A wave row draws "3/10 healthy": the healthy count is the first number.
  text = text.replace(/(\d+)\/\d+ healthy/g, '$1 healthy');
  for (const m of text.matchAll(/(\d+) (failed|updating|healthy|waiting|pending|new|offline)\b/g)) out[m[2] === 'waiting' ? 'pending' : m[2]!] = Number(m[1]);
  return out;
}

describe('counts agree everywhere (halt line, wave rows, totals)', () => {
  it('property: the halt line\'s "now" figures are the sums of the wave rows drawn beside it, and its "at the halt" figures are the record\'s', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => waveArb(i + 1)))), count, count, (waves, failed, extra) => {
        const status = rollout(waves, { failed, attempted: failed + extra });
        const line = describeHalt(status)!;
        const [atHalt, now] = line.split('; now: ');
        expect(atHalt).toContain(`${failed} of ${failed + extra} attempted devices failed`);
        const rows = waves.map((w) => figures(waveLine(w)));
        const summed = (k: string) => rows.reduce((s, r) => s + (r[k] ?? 0), 0);
        const stated = figures(now!);
        for (const k of ['failed', 'updating', 'healthy', 'pending', 'new', 'offline']) expect(stated[k] ?? 0).toBe(summed(k));
        expect(now!.endsWith(` of ${sumWaves(waves).devices}`)).toBe(true);
        // The hub's per-Deployment counts are the same sums.
        const hub = rolloutCounts(waves);
        expect([hub.failed, hub.updating, hub.converged, hub.pending]).toEqual([summed('failed'), summed('updating'), summed('healthy'), summed('pending')]);
        // And `cascade status` prints that very line.
        expect(renderRollout(status).join('\n')).toContain(`halted ${line}`);
      }),
    );
  });

  it('a halt judged on 2 of 5 attempted, followed by 3 more failures: the line says both, and which is which', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { maxUnavailable: 5, failureThreshold: '30%', minSample: 5 } }).add(1, ...ids('d', 10));
    const first = sim.pass(T0).newlyReleased;
    expect(first).toHaveLength(5);
    sim.failed(first[0]!, first[1]!).healthy(first[2]!, first[3]!, first[4]!);
    let pass = sim.pass(T0 + MINUTE);
    expect(pass.status.state).toBe('Halted');
    expect(pass.state.halted).toMatchObject({ failed: 2, attempted: 5 });
    // Later the other three report failed too (a health check that fails late).
    sim.failed(first[2]!, first[3]!, first[4]!);
    pass = sim.pass(T0 + 2 * MINUTE);
    const line = describeHalt(pass.status)!;
    expect(line).toMatch(/^at the halt \(\S+Z\): 2 of 5 attempted devices failed \(40% >= 30%\); now: 5 failed, /);
    expect(sumWaves(pass.status.waves).failed).toBe(5);
  });
});
