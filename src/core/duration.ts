import { CascadeError } from './errors.js';

/** Milliseconds per unit, largest first: a duration lists its parts in this order, each at most once. */
const UNITS: ReadonlyArray<readonly [string, number]> = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1],
];
const PART = /(\d{1,9})(ms|d|h|m|s)/y;

/** Milliseconds of a duration such as `45s`, `10m`, `1h30m`, `2d`, `500ms`, or undefined when malformed. */
function tryParseDuration(text: string): number | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) return undefined;
  let total = 0;
  let nextUnit = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const start = PART.lastIndex;
    const match = PART.exec(text);
    if (!match || match.index !== start) return undefined;
    const unitIndex = UNITS.findIndex(([unit]) => unit === match[2]);
    // Units must come largest first and only once, so `30m1h` and `1m1m` are rejected as typos.
    if (unitIndex < nextUnit) return undefined;
    nextUnit = unitIndex + 1;
    total += Number(match[1]) * UNITS[unitIndex]![1];
  }
  return total;
}

export function isDuration(text: unknown): boolean {
  return typeof text === 'string' && tryParseDuration(text) !== undefined;
}

/** Parses `45s`, `10m`, `1h30m`, `2d`, `500ms` into milliseconds; throws CascadeError `bad-duration` otherwise. */
export function parseDuration(text: string): number {
  const ms = tryParseDuration(text);
  if (ms === undefined) {
    throw new CascadeError(
      'bad-duration',
      `"${text}" is not a duration; write whole numbers with units d, h, m, s or ms, largest first, e.g. 45s, 10m, 1h30m`,
      { text },
    );
  }
  return ms;
}
