import { describe, expect, it } from 'vitest';
import { isDuration, parseDuration } from '../../src/core/duration.js';
import { CascadeError } from '../../src/core/errors.js';

describe('parseDuration', () => {
  it('reads units largest first', () => {
    expect(parseDuration('45s')).toBe(45_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(parseDuration('1m500ms')).toBe(60_500);
    expect(parseDuration('0s')).toBe(0);
  });

  it.each(['', '10', 'm', '10x', '1.5h', '30m1h', '1m1m', '10 m', ' 10m', '-5s', '1h 30m'])('rejects %j with bad-duration', (text) => {
    expect(isDuration(text)).toBe(false);
    expect(() => parseDuration(text)).toThrow(CascadeError);
    try {
      parseDuration(text);
    } catch (err) {
      expect((err as CascadeError).code).toBe('bad-duration');
      expect((err as CascadeError).message).toContain('e.g. 45s, 10m, 1h30m');
    }
  });

  it('says no to non-strings', () => {
    expect(isDuration(10)).toBe(false);
    expect(isDuration(null)).toBe(false);
  });
});
