import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { expect } from 'vitest';

/**
 * Compares `actual` with test/fixtures/plan/NAME. Run with UPDATE_GOLDEN=1 to rewrite the files after an
 * intended change, then review the diff.
 */
export function expectGolden(name: string, actual: string): void {
  const file = new URL(`../fixtures/plan/${name}`, import.meta.url);
  if (process.env['UPDATE_GOLDEN'] === '1') {
    writeFileSync(file, actual);
    return;
  }
  if (!existsSync(file)) throw new Error(`golden file test/fixtures/plan/${name} is missing; create it with UPDATE_GOLDEN=1`);
  expect(actual, `differs from test/fixtures/plan/${name} (UPDATE_GOLDEN=1 rewrites it)`).toBe(readFileSync(file, 'utf8'));
}
