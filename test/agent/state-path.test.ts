import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkStatePath, STATE_PATH_REFUSED, statePath } from '../../src/agent/state-path.js';

let dir: string;
let state: string;
let outside: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cascade-state-path-'));
  state = join(dir, 'state');
  outside = join(dir, 'outside');
  mkdirSync(state);
  mkdirSync(outside);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    expect((err as { code: string }).code).toBe(STATE_PATH_REFUSED);
    return (err as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('paths the agent writes', () => {
  it('are built inside the state folder from plain segments', async () => {
    const path = await statePath(state, ['artifacts', 'web', '1.0.0', 'web.tgz'], { create: true });
    expect(path).toBe(join(state, 'artifacts', 'web', '1.0.0', 'web.tgz'));
    expect(existsSync(join(state, 'artifacts', 'web', '1.0.0'))).toBe(true);
  });

  it('refuses .., absolute parts, separators and empty names, making nothing', async () => {
    for (const segments of [['artifacts', '..', '..', 'x'], ['artifacts', 'web', '..'], ['artifacts', '/etc', 'x'], ['artifacts', 'a/../../b'], ['artifacts', 'a\\b'], ['artifacts', ''], ['artifacts', '.'], ['artifacts', 'a\0b'], ['..']]) {
      await refusal(statePath(state, segments, { create: true }));
    }
    expect(readdirSync(state)).toEqual([]);
    expect(readdirSync(outside)).toEqual([]);
  });

  it('refuses a symlink on the way that leads out, before making any folder through it', async () => {
    mkdirSync(join(state, 'artifacts'));
    symlinkSync(outside, join(state, 'artifacts', 'web'));
    expect(await refusal(statePath(state, ['artifacts', 'web', '1.0.0', 'web.tgz'], { create: true }))).toContain('outside the state folder');
    expect(readdirSync(outside)).toEqual([]);
    // The same for a path read back from the state file before deleting it.
    await refusal(checkStatePath(state, join(state, 'artifacts', 'web', '1.0.0')));
    await refusal(checkStatePath(state, join(state, '..', 'outside')));
    await refusal(checkStatePath(state, state));
  });

  it('refuses a path that is itself a symlink', async () => {
    mkdirSync(join(state, 'artifacts', 'web', '1.0.0'), { recursive: true });
    symlinkSync(join(outside, 'x'), join(state, 'artifacts', 'web', '1.0.0', 'web.tgz'));
    expect(await refusal(statePath(state, ['artifacts', 'web', '1.0.0', 'web.tgz'], { create: true }))).toContain('is a symlink');
  });
});
