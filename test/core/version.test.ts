import { describe, expect, it } from 'vitest';
import { compareVersions, isComparableVersion, parseVersion } from '../../src/core/version.js';

const sign = (n: number) => Math.sign(n);

describe('compareVersions', () => {
  it('orders semver releases numerically, not lexically', () => {
    expect(sign(compareVersions('1.10.0', '1.9.0'))).toBe(1);
    expect(sign(compareVersions('2.0.3', '2.1.0'))).toBe(-1);
    expect(sign(compareVersions('10.0.0', '9.99.99'))).toBe(1);
    expect(compareVersions('2.1.0', '2.1.0')).toBe(0);
  });

  it('ranks pre-releases below their release, in semver order', () => {
    const ordered = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0'];
    for (let i = 0; i < ordered.length - 1; i++) {
      expect(sign(compareVersions(ordered[i]!, ordered[i + 1]!)), `${ordered[i]} < ${ordered[i + 1]}`).toBe(-1);
      expect(sign(compareVersions(ordered[i + 1]!, ordered[i]!))).toBe(1);
    }
    expect(sign(compareVersions('1.0.0-rc.1', '0.9.9'))).toBe(1);
  });

  it('accepts short, calendar, v-prefixed and long versions', () => {
    expect(sign(compareVersions('1.4', '1.3.9'))).toBe(1);
    expect(sign(compareVersions('1.4', '1.4.1'))).toBe(-1);
    expect(sign(compareVersions('2024.05.1', '2024.4.30'))).toBe(1);
    expect(sign(compareVersions('v2', 'v10'))).toBe(-1);
    expect(sign(compareVersions('v2', '1.9'))).toBe(1);
    expect(sign(compareVersions('1.2.3.4', '1.2.3.10'))).toBe(-1);
    expect(sign(compareVersions('123456789012345678901', '123456789012345678900'))).toBe(1);
  });

  it('never calls two different strings equal, breaking precedence ties by code units', () => {
    expect(sign(compareVersions('1.4', '1.4.0'))).toBe(-1);
    expect(sign(compareVersions('1.4.0', '1.4'))).toBe(1);
    expect(sign(compareVersions('1.0.0+build.2', '1.0.0+build.1'))).toBe(1);
    expect(sign(compareVersions('v2', '2'))).toBe(1);
    expect(compareVersions('1.0.0+a', '1.0.0+a')).toBe(0);
  });

  it('ranks non-versions above versions and orders them lexically', () => {
    expect(isComparableVersion('latest')).toBe(false);
    expect(sign(compareVersions('latest', '99.0.0'))).toBe(1);
    expect(sign(compareVersions('1.0.0', 'abc123'))).toBe(-1);
    expect(sign(compareVersions('abc123', 'abd000'))).toBe(-1);
    expect(sign(compareVersions('1.2.3rc1', '1.2.3'))).toBe(1);
  });

  it('is a total order: sorting any shuffle gives one result, and comparisons are antisymmetric and transitive', () => {
    const versions = ['1.10', '1.9', '1.5x', 'v1.9', '1.9.0', '1.9.0-rc.1', 'latest', '2024.05.1', '0.0.1', '1.0.0+b', '1.0.0+a', 'abc', '1.0', '1'];
    const sorted = [...versions].sort(compareVersions);
    for (let seed = 1; seed <= 20; seed++) {
      const shuffled = shuffle(versions, seed);
      expect(shuffled.sort(compareVersions)).toEqual(sorted);
    }
    for (const a of versions) {
      for (const b of versions) {
        expect(sign(compareVersions(a, b))).toBe(-sign(compareVersions(b, a)) || 0);
        for (const c of versions) {
          if (compareVersions(a, b) < 0 && compareVersions(b, c) < 0) expect(compareVersions(a, c)).toBeLessThan(0);
        }
      }
    }
  });
});

describe('parseVersion', () => {
  it('splits release and pre-release and drops build metadata and leading zeros', () => {
    expect(parseVersion('v01.002.3-rc.01+sha.abc')).toEqual({ release: ['1', '2', '3'], prerelease: ['rc', '1'] });
    expect(parseVersion('1..2')).toBeNull();
    expect(parseVersion('')).toBeNull();
  });
});

function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2147483648;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
