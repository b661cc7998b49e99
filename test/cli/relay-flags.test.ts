import { describe, expect, it } from 'vitest';
import { byteSizeFlag, shareFlag } from '../../src/cli/parse-flags.js';

describe('relay flags', () => {
  it.each([
    ['1048576', 1048576],
    ['512MiB', 512 * 1024 ** 2],
    ['10G', 10 * 1024 ** 3],
    ['2MB/s', 2_000_000],
    ['1.5 KiB', 1536],
  ])('--artifact-cache-size / --relay-rate %s', (text, bytes) => {
    expect(byteSizeFlag(text)).toBe(bytes);
  });

  it.each(['', '0', '-5', '10 parsecs', '1e400', 'MB', '5MB/h'])('refuses %j', (text) => {
    expect(() => byteSizeFlag(text)).toThrow(/is not a size in bytes/);
  });

  it('reads a share as a fraction or a percentage', () => {
    expect(shareFlag('0.5')).toBe(0.5);
    expect(shareFlag('25%')).toBe(0.25);
    for (const bad of ['0', '1.5', '150%', 'half']) expect(() => shareFlag(bad)).toThrow(/is not a share/);
  });
});
