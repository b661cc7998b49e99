import { describe, expect, it } from 'vitest';
import { effectiveRollout, mergeRollouts, waveOf, wavePoint } from '../../src/plan/waves.js';
import { deployment, makeFleet, region } from './fleet-fixture.js';

const ids = Array.from({ length: 10_000 }, (_, i) => `device-${String(i).padStart(5, '0')}`);

describe('waveOf', () => {
  it('is the same on every call, and pinned so that a change of hash cannot go unnoticed', () => {
    const first = ids.map((id) => waveOf(id, 'web-eu', [1, 10, 50, 100]));
    const again = ids.map((id) => waveOf(id, 'web-eu', [1, 10, 50, 100]));
    expect(again).toEqual(first);
    // Pinned values: changing the hash would silently reshuffle every fleet's canaries.
    expect([wavePoint('device-00000', 'web-eu'), wavePoint('rpi-berlin-7', 'agent'), wavePoint('ü-设备-😀', 'x')].map((p) => p.toFixed(6))).toMatchInlineSnapshot(`
      [
        "75.587704",
        "62.601723",
        "95.613096",
      ]
    `);
  });

  it('is FNV-1a 32-bit over the UTF-8 bytes of id + NUL + name, finalised with fmix32, scaled to [0, 100)', () => {
    expect(fnv1a(Buffer.from('a'))).toBe(0xe40c292c); // the published FNV-1a test vector
    for (const [id, name] of [['device-00000', 'web-eu'], ['café', 'd'], ['ü-设备-😀', 'x'], ['', ''], ['lone\ud800', 'y']] as const) {
      const expected = (fmix32(fnv1a(Buffer.from(`${id}\0${name}`, 'utf8'))) / 2 ** 32) * 100;
      expect(wavePoint(id, name), id).toBe(expected);
    }
    expect(wavePoint('a', 'bc')).not.toBe(wavePoint('ab', 'c'));
  });

  it('only adds devices to a wave when its percentage grows', () => {
    const inWave1 = (percent: number) => new Set(ids.filter((id) => waveOf(id, 'web-eu', [percent, 100]) === 1));
    let previous = inWave1(0);
    expect(previous.size).toBe(0);
    for (const percent of [1, 2, 5, 10, 25, 50, 99]) {
      const current = inWave1(percent);
      for (const id of previous) expect(current.has(id)).toBe(true);
      previous = current;
    }
    expect(inWave1(100).size).toBe(ids.length);
  });

  it('fills waves in roughly the proportions asked for', () => {
    const waves = [1, 10, 50, 100];
    const counts = [0, 0, 0, 0];
    for (const id of ids) counts[waveOf(id, 'web-eu', waves) - 1]!++;
    const expected = [100, 900, 4000, 5000];
    for (let i = 0; i < 4; i++) {
      // Binomial standard deviation is at most 50 for 10,000 draws; allow 4 of them.
      expect(Math.abs(counts[i]! - expected[i]!), `wave ${i + 1}: ${counts[i]}`).toBeLessThan(200);
    }
  });

  it('picks different canaries for different Deployments', () => {
    const canaries = (name: string) => ids.filter((id) => waveOf(id, name, [5, 100]) === 1);
    const a = new Set(canaries('web-eu'));
    const b = canaries('agent-eu');
    const shared = b.filter((id) => a.has(id)).length;
    expect(shared).toBeLessThan(b.length / 4);
  });

  it('puts everything in wave 1 for a single or missing wave, and in the last wave above a short last percentage', () => {
    expect(ids.slice(0, 100).every((id) => waveOf(id, 'x', []) === 1 && waveOf(id, 'x', [100]) === 1)).toBe(true);
    expect(Math.max(...ids.map((id) => waveOf(id, 'x', [10, 20])))).toBe(2);
  });
});

describe('effectiveRollout', () => {
  const fleet = makeFleet({
    deployments: [
      deployment('web-eu', 'web', '2.1.0', { rollout: { waves: [5, 100], bakeTime: '10m' } }),
      deployment('agent', 'agent', '1.0.0'),
    ],
    regions: [region('eu-west', { waves: [1, 50, 100], maxUnavailable: '10%', bakeTime: '1h' }), region('us-east')],
    fleetRollout: { waves: [10, 100], maxUnavailable: 3, failureThreshold: '5%', window: { schedule: '0 2 * * *', duration: '2h' } },
  });

  it('merges Deployment > Region > Fleet field by field', () => {
    expect(effectiveRollout(fleet, 'web-eu', 'eu-west')).toEqual({
      waves: [5, 100],
      bakeTime: '10m',
      maxUnavailable: '10%',
      failureThreshold: '5%',
      window: { schedule: '0 2 * * *', duration: '2h' },
    });
    expect(effectiveRollout(fleet, 'agent', 'eu-west')).toMatchObject({ waves: [1, 50, 100], bakeTime: '1h', maxUnavailable: '10%' });
    expect(effectiveRollout(fleet, 'agent', 'us-east')).toMatchObject({ waves: [10, 100], maxUnavailable: 3 });
    expect(effectiveRollout(fleet, 'agent', 'unknown-region')).toMatchObject({ waves: [10, 100] });
  });

  it('falls back to one wave of 100%, and returns waves the caller may change without touching the fleet', () => {
    const bare = makeFleet({ deployments: [deployment('agent', 'agent', '1.0.0')] });
    const rollout = effectiveRollout(bare, 'agent', 'eu');
    expect(rollout).toEqual({ waves: [100] });
    rollout.waves.push(7);
    expect(effectiveRollout(bare, 'agent', 'eu').waves).toEqual([100]);
    expect(mergeRollouts(undefined, { waves: [] })).toEqual({ waves: [100] });
  });
});

function fnv1a(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

function fmix32(hash: number): number {
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}
