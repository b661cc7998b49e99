import { execFileSync } from 'node:child_process';
import fs, { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CascadeError } from '../../src/core/errors.js';
import { FleetLoader } from '../../src/desired/load.js';
import { readGitSnapshot } from '../../src/source/git-snapshot.js';
import { UNKNOWN_SIZE } from '../../src/source/snapshot.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: tmpdir(),
};

function git(dir: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd: dir, env: GIT_ENV, encoding: 'utf8' }).trim();
}

function newRepo(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-git-'));
  dirs.push(dir);
  git(dir, 'init', '-q', '-b', 'main');
  return dir;
}

function write(dir: string, files: Record<string, string | null>): void {
  for (const [path, content] of Object.entries(files)) {
    if (content === null) rmSync(join(dir, path));
    else {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), content);
    }
  }
}

function commit(dir: string, files: Record<string, string | null>, message = 'change'): string {
  write(dir, files);
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', message);
  return git(dir, 'rev-parse', 'HEAD');
}

const REGION = (name: string) => `apiVersion: cascade/v1\nkind: Region\nmetadata:\n  name: ${name}\n`;

/** Node's fs, counting reads of git objects (loose objects and packs). */
function countingFs() {
  const counter = { objectReads: 0 };
  const readFile = ((path: fs.PathLike, ...rest: unknown[]) => {
    if (String(path).includes('/objects/')) counter.objectReads++;
    return (fs.promises.readFile as (...a: unknown[]) => Promise<unknown>)(path, ...rest);
  }) as typeof fs.promises.readFile;
  return { fs: { ...fs, promises: { ...fs.promises, readFile } } as typeof fs, counter };
}

describe('readGitSnapshot', () => {
  it('reads the fleet files of a commit, not the working tree, with git blob ids', async () => {
    const dir = newRepo();
    const first = commit(dir, {
      'regions/eu.yaml': REGION('eu'),
      'regions/us.yml': REGION('us'),
      '.cascadeignore': 'drafts/\n',
      'drafts/wip.yaml': 'not: [valid\n',
      '.hidden/x.yaml': 'x: 1\n',
      'README.md': '# fleet\n',
    });
    write(dir, { 'regions/eu.yaml': 'uncommitted: true\n', 'regions/new.yaml': REGION('new') });

    const { snapshot, state } = await readGitSnapshot({ dir, ref: 'main' });
    expect(snapshot.revision).toBe(first);
    expect(state.revision).toBe(first);
    expect(snapshot.files.map((f) => f.path)).toEqual(['regions/eu.yaml', 'regions/us.yml']);
    const eu = snapshot.files[0]!;
    expect(eu.id).toBe(git(dir, 'rev-parse', 'HEAD:regions/eu.yaml'));
    expect(eu.size).toBe(UNKNOWN_SIZE);
    expect(new TextDecoder().decode(await eu.read())).toBe(REGION('eu'));
  });

  it('resolves branches, annotated and lightweight tags, HEAD, and full or abbreviated commit ids', async () => {
    const dir = newRepo();
    const first = commit(dir, { 'a.yaml': REGION('a') });
    git(dir, 'tag', '-a', 'v1', '-m', 'release 1');
    git(dir, 'tag', 'light');
    const second = commit(dir, { 'b.yaml': REGION('b') });
    git(dir, 'branch', 'old', first);
    const revisionOf = async (ref: string) => (await readGitSnapshot({ dir, ref })).snapshot.revision;
    expect(await revisionOf('v1')).toBe(first);
    expect(await revisionOf('light')).toBe(first);
    expect(await revisionOf('old')).toBe(first);
    expect(await revisionOf('HEAD')).toBe(second);
    expect(await revisionOf(second)).toBe(second);
    expect(await revisionOf(first.slice(0, 8))).toBe(first);
    expect((await readGitSnapshot({ dir, ref: 'v1' })).snapshot.files.map((f) => f.path)).toEqual(['a.yaml']);
  });

  it('says what to do with an unknown revision', async () => {
    const dir = newRepo();
    commit(dir, { 'a.yaml': REGION('a') });
    for (const ref of ['nope', 'deadbeef']) {
      const error = await readGitSnapshot({ dir, ref }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CascadeError);
      expect((error as CascadeError).code).toBe('unknown-rev');
      expect((error as CascadeError).message).toContain(`"${ref}" is not a branch, tag or commit`);
    }
  });

  it('works on a bare repository', async () => {
    const dir = newRepo();
    const head = commit(dir, { 'a.yaml': REGION('a') });
    const bare = `${dir}-bare.git`;
    dirs.push(bare);
    execFileSync('git', ['clone', '-q', '--bare', dir, bare], { env: GIT_ENV });
    const { snapshot } = await readGitSnapshot({ gitdir: bare, ref: 'main' });
    expect(snapshot.revision).toBe(head);
    expect(snapshot.files.map((f) => f.path)).toEqual(['a.yaml']);
  });

  it('reads .cascadeignore from the commit, including changes to it', async () => {
    const dir = newRepo();
    commit(dir, { '.cascadeignore': 'b.yaml\n', 'a.yaml': REGION('a'), 'b.yaml': REGION('b') });
    const first = await readGitSnapshot({ dir, ref: 'HEAD' });
    expect(first.snapshot.files.map((f) => f.path)).toEqual(['a.yaml']);
    commit(dir, { '.cascadeignore': 'a.yaml\n' });
    const second = await readGitSnapshot({ dir, ref: 'HEAD', previous: first.state });
    expect(second.snapshot.files.map((f) => f.path)).toEqual(['b.yaml']);
  });

  it('given the previous state, reads only the trees that changed and no blobs', async () => {
    const dir = newRepo();
    const files: Record<string, string> = {};
    for (let d = 0; d < 10; d++) for (let f = 0; f < 10; f++) files[`team-${d}/sub/r-${f}.yaml`] = REGION(`r-${d}-${f}`);
    commit(dir, files);
    const cold = countingFs();
    const first = await readGitSnapshot({ dir, ref: 'main', fs: cold.fs });
    expect(first.snapshot.files).toHaveLength(100);
    // commit + root tree + 10 team trees + 10 sub trees; blobs are not read.
    expect(cold.counter.objectReads).toBe(22);

    commit(dir, { 'team-3/sub/r-4.yaml': REGION('changed') });
    const warm = countingFs();
    const second = await readGitSnapshot({ dir, ref: 'main', fs: warm.fs, previous: first.state });
    // commit + the three trees on the changed path.
    expect(warm.counter.objectReads).toBe(4);
    const changed = second.snapshot.files.filter((f, i) => f.id !== first.snapshot.files[i]!.id).map((f) => f.path);
    expect(changed).toEqual(['team-3/sub/r-4.yaml']);
  });

  it('lets the loader parse only the blob that changed between commits', async () => {
    const dir = newRepo();
    const files: Record<string, string> = {};
    for (let i = 0; i < 30; i++) files[`regions/r-${i}.yaml`] = REGION(`r-${i}`);
    commit(dir, files);
    const loader = new FleetLoader();
    const first = await readGitSnapshot({ dir, ref: 'main' });
    expect((await loader.load(first.snapshot)).stats.parsed).toBe(30);
    const head = commit(dir, { 'regions/r-7.yaml': REGION('seven') });
    const second = await readGitSnapshot({ dir, ref: 'main', previous: first.state });
    const result = await loader.load(second.snapshot);
    expect(result.stats).toEqual({ files: 30, parsed: 1, cached: 29 });
    expect(result.fleet.revision).toBe(head);
    expect(result.fleet.regions.has('seven')).toBe(true);
    expect(result.fleet.regions.has('r-7')).toBe(false);
  });
});
