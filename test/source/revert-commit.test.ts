import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { revertCommit } from '../../src/source/revert-commit.js';

const OPS = { name: 'Ops', email: 'ops@example.com' };

function repo(): { dir: string; commit: (files: Record<string, string>, message: string) => string } {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-revert-'));
  const run = (...args: string[]) => execFileSync('git', args, { cwd: dir, encoding: 'utf8' }).trim();
  run('init', '-q', '-b', 'main');
  run('config', 'user.email', 't@example.com');
  run('config', 'user.name', 'Test');
  return {
    dir,
    commit(files, message) {
      for (const [path, content] of Object.entries(files)) writeFileSync(join(dir, path), content);
      run('add', '-A');
      run('commit', '-q', '-m', message);
      return run('rev-parse', 'HEAD');
    },
  };
}

describe('revertCommit', () => {
  it('writes a commit that restores the files as they were before the reverted commit', async () => {
    const r = repo();
    r.commit({ 'web.yaml': 'version: 1.0\n', 'db.yaml': 'version: 3\n' }, 'initial');
    const bump = r.commit({ 'web.yaml': 'version: 2.0\n' }, 'web: roll out 2.0');
    r.commit({ 'db.yaml': 'version: 4\n' }, 'db: roll out 4');
    const result = await revertCommit({ dir: r.dir, gitdir: join(r.dir, '.git'), commit: bump, author: OPS });
    expect(result.paths).toEqual(['web.yaml']);
    expect(readFileSync(join(r.dir, 'web.yaml'), 'utf8')).toBe('version: 1.0\n');
    expect(readFileSync(join(r.dir, 'db.yaml'), 'utf8')).toBe('version: 4\n');
    const log = execFileSync('git', ['log', '-1', '--format=%s%n%b'], { cwd: r.dir, encoding: 'utf8' });
    expect(log).toContain('Revert "web: roll out 2.0"');
    expect(log).toContain(`This reverts commit ${bump}.`);
    // The git binary agrees: the working tree is clean and HEAD has the old content.
    expect(execFileSync('git', ['status', '--porcelain'], { cwd: r.dir, encoding: 'utf8' })).toBe('');
    expect(execFileSync('git', ['show', 'HEAD:web.yaml'], { cwd: r.dir, encoding: 'utf8' })).toBe('version: 1.0\n');
  });

  it('refuses, naming the file, when a later commit changed the same file', async () => {
    const r = repo();
    r.commit({ 'web.yaml': 'version: 1.0\n' }, 'initial');
    const bump = r.commit({ 'web.yaml': 'version: 2.0\n' }, 'web 2.0');
    r.commit({ 'web.yaml': 'version: 2.1\n' }, 'web 2.1');
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: r.dir, encoding: 'utf8' }).trim();
    await expect(revertCommit({ dir: r.dir, gitdir: join(r.dir, '.git'), commit: bump, author: OPS })).rejects.toMatchObject({
      code: 'revert-conflict',
      message: expect.stringContaining('web.yaml'),
    });
    expect(execFileSync('git', ['rev-parse', 'HEAD'], { cwd: r.dir, encoding: 'utf8' }).trim()).toBe(head);
  });

  it('refuses a commit that is already undone, and an unknown commit', async () => {
    const r = repo();
    r.commit({ 'web.yaml': 'version: 1.0\n' }, 'initial');
    const bump = r.commit({ 'web.yaml': 'version: 2.0\n' }, 'web 2.0');
    r.commit({ 'web.yaml': 'version: 1.0\n' }, 'manual undo');
    await expect(revertCommit({ dir: r.dir, gitdir: join(r.dir, '.git'), commit: bump, author: OPS })).rejects.toMatchObject({ code: 'revert-empty' });
    await expect(revertCommit({ dir: r.dir, gitdir: join(r.dir, '.git'), commit: 'deadbeef', author: OPS })).rejects.toMatchObject({ code: 'revert-unknown-commit' });
  });

  it('reverts a merged pull request against its first parent', async () => {
    const r = repo();
    const run = (...args: string[]) => execFileSync('git', args, { cwd: r.dir, encoding: 'utf8' }).trim();
    r.commit({ 'web.yaml': 'version: 1.0\n', 'db.yaml': 'version: 3\n' }, 'initial');
    run('checkout', '-q', '-b', 'pr');
    r.commit({ 'web.yaml': 'version: 2.0\n' }, 'web 2.0');
    run('checkout', '-q', 'main');
    r.commit({ 'db.yaml': 'version: 4\n' }, 'db 4');
    run('merge', '-q', '--no-ff', '-m', 'Merge pull request #7', 'pr');
    const merge = run('rev-parse', 'HEAD');
    const result = await revertCommit({ dir: r.dir, gitdir: join(r.dir, '.git'), commit: merge, author: OPS });
    expect(result.paths).toEqual(['web.yaml']);
    expect(run('show', 'HEAD:web.yaml')).toBe('version: 1.0');
    expect(run('show', 'HEAD:db.yaml')).toBe('version: 4');
  });
});
