import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDescendant } from '../../src/source/ancestry.js';
import { commitFiles, git, makeLocalRepo, makeOrphanCommit } from '../support/git-fixtures.js';

describe('isDescendant', () => {
  let root: string;
  let dir: string;
  let gitdir: string;
  let first: string;
  let second: string;
  let third: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-ancestry-'));
    ({ dir, head: first } = await makeLocalRepo(join(root, 'repo'), { 'web.yaml': 'version: 1.0\n' }));
    gitdir = join(dir, '.git');
    second = await commitFiles(dir, { 'web.yaml': 'version: 2.0\n' }, 'web 2.0');
    third = await commitFiles(dir, { 'web.yaml': 'version: 3.0\n' }, 'web 3.0');
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('is true along linear history, including the commit itself', async () => {
    expect(await isDescendant({ gitdir, oid: second, ancestor: first })).toBe(true);
    expect(await isDescendant({ gitdir, oid: third, ancestor: first })).toBe(true);
    expect(await isDescendant({ gitdir, oid: third, ancestor: third })).toBe(true);
  });

  it('is false for a force-push back to an older commit', async () => {
    expect(await isDescendant({ gitdir, oid: first, ancestor: third })).toBe(false);
    expect(await isDescendant({ gitdir, oid: second, ancestor: third })).toBe(false);
  });

  it('is false for a force-push to an unrelated history', async () => {
    const orphan = await makeOrphanCommit(dir, { 'web.yaml': 'version: 1.0\n' }, 'rewritten history');
    expect(await isDescendant({ gitdir, oid: orphan, ancestor: third })).toBe(false);
    expect(await isDescendant({ gitdir, oid: third, ancestor: orphan })).toBe(false);
  });

  it('is false for a sibling branch and true through the second parent of a merge', async () => {
    await git(dir, ['checkout', '--quiet', '-b', 'hotfix', second]);
    const hotfix = await commitFiles(dir, { 'db.yaml': 'version: 4\n' }, 'db 4');
    await git(dir, ['checkout', '--quiet', 'main']);
    expect(await isDescendant({ gitdir, oid: third, ancestor: hotfix })).toBe(false);
    await git(dir, ['merge', '--quiet', '--no-edit', '--no-ff', 'hotfix']);
    const merge = await git(dir, ['rev-parse', 'HEAD']);
    expect(await isDescendant({ gitdir, oid: merge, ancestor: hotfix })).toBe(true);
    expect(await isDescendant({ gitdir, oid: merge, ancestor: first })).toBe(true);
  });

  it('says it cannot tell, rather than guessing, when the history is deeper than allowed or missing', async () => {
    await expect(isDescendant({ gitdir, oid: third, ancestor: 'f'.repeat(40), depth: 2 })).rejects.toMatchObject({
      code: 'ancestry-unknown',
      message: expect.stringContaining('ffffffff was not found within 2 commits of its history'),
    });
    await expect(isDescendant({ gitdir, oid: 'e'.repeat(40), ancestor: third })).rejects.toMatchObject({
      code: 'ancestry-unknown',
    });
  });
});
