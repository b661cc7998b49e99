import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isCascadeError } from '../../src/core/errors.js';
import { loadRepository } from '../../src/desired/load-repository.js';
import { initFleetRepository } from '../../src/source/init-repository.js';

const PROJECT = fileURLToPath(new URL('../../', import.meta.url)).replace(/[\\/]$/, '');
const TEMPLATE = path.join(PROJECT, 'fleet-repo-template');
const SCHEMAS = path.join(PROJECT, 'schemas');
const AUTHOR = { name: 'Ada Operator', email: 'ada@example.com' };

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-init-test-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function gitOut(dir: string, ...args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8' }).trim();
}

function filesUnder(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const relative = prefix + entry.name;
    if (entry.isDirectory()) out.push(...filesUnder(path.join(dir, entry.name), relative + '/'));
    else out.push(relative);
  }
  return out;
}

async function expectCascadeError(promise: Promise<unknown>, code: string): Promise<Error> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isCascadeError(err), `expected a CascadeError ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
  return err as Error;
}

describe('initFleetRepository', () => {
  it('creates a repository whose first commit git reads, holding the template and the schemas', async () => {
    const dir = path.join(tmp, 'nested', 'fleet');
    const result = await initFleetRepository(dir, { author: AUTHOR });

    expect(gitOut(dir, 'log', '--format=%H|%an <%ae>|%s')).toBe(
      `${result.commit}|Ada Operator <ada@example.com>|Create fleet repository from the Cascade template`,
    );
    expect(gitOut(dir, 'symbolic-ref', 'HEAD')).toBe('refs/heads/main');
    expect(gitOut(dir, 'status', '--porcelain')).toBe('');
    execFileSync('git', ['-C', dir, 'fsck', '--strict', '--no-progress'], { stdio: 'pipe' });

    const schemas = fs.readdirSync(SCHEMAS).filter((f) => f.endsWith('.schema.json'));
    expect(schemas.length).toBeGreaterThanOrEqual(4);
    const expected = [...filesUnder(TEMPLATE), ...schemas.map((s) => `.cascade/schemas/${s}`)].sort();
    expect(result.files).toEqual(expected);
    expect(gitOut(dir, 'ls-files').split('\n')).toEqual(expected);
    for (const schema of schemas) {
      expect(fs.readFileSync(path.join(dir, '.cascade/schemas', schema), 'utf8')).toBe(
        fs.readFileSync(path.join(SCHEMAS, schema), 'utf8'),
      );
    }
    expect(fs.readdirSync(dir).filter((e) => e.startsWith('.cascade-init-'))).toEqual([]);
  });

  it('points every modeline at the copy in .cascade/schemas, relative to the file, and changes nothing else', async () => {
    const dir = path.join(tmp, 'fleet');
    const { files } = await initFleetRepository(dir, { author: AUTHOR });
    const yamlFiles = files.filter((f) => f.endsWith('.yaml'));
    expect(yamlFiles).toContain('fleet.yaml');
    expect(yamlFiles).toContain('deployments/sensor-agent.yaml');
    for (const file of yamlFiles) {
      const created = fs.readFileSync(path.join(dir, file), 'utf8').split('\n');
      const original = fs.readFileSync(path.join(TEMPLATE, file), 'utf8').split('\n');
      const modeline = /^# yaml-language-server: \$schema=(\S+)$/.exec(created[0]!);
      expect(modeline, `${file}: first line is the schema modeline`).not.toBeNull();
      const schemaPath = path.resolve(dir, path.dirname(file), modeline![1]!);
      expect(path.dirname(schemaPath), file).toBe(path.join(dir, '.cascade', 'schemas'));
      expect(fs.existsSync(schemaPath), `${file} -> ${modeline![1]}`).toBe(true);
      expect(created.slice(1)).toEqual(original.slice(1));
    }
    expect(fs.readFileSync(path.join(dir, 'deployments/sensor-agent.yaml'), 'utf8')).toMatch(
      /^# yaml-language-server: \$schema=\.\.\/\.cascade\/schemas\/deployment\.schema\.json\n/,
    );
    expect(fs.readFileSync(path.join(dir, 'fleet.yaml'), 'utf8')).toMatch(
      /^# yaml-language-server: \$schema=\.cascade\/schemas\/fleet\.schema\.json\n/,
    );
  });

  it('makes a repository that loads with no problems, from the working tree and from the commit', async () => {
    const dir = path.join(tmp, 'fleet');
    const { commit } = await initFleetRepository(dir, { author: AUTHOR });
    const fromTree = await loadRepository(dir);
    expect(fromTree.problems).toEqual([]);
    expect(fromTree.fleet.deployments.size).toBe(8);
    const fromCommit = await loadRepository(dir, { rev: 'main' });
    expect(fromCommit.problems).toEqual([]);
    expect(fromCommit.revision).toBe(commit);
    expect(fromCommit.fleet.apps.size).toBe(4);
  });

  it('writes into an existing empty directory, on the branch asked for', async () => {
    const dir = path.join(tmp, 'empty');
    fs.mkdirSync(dir);
    const { commit } = await initFleetRepository(dir, { branch: 'trunk', author: AUTHOR });
    expect(gitOut(dir, 'symbolic-ref', 'HEAD')).toBe('refs/heads/trunk');
    expect(gitOut(dir, 'rev-parse', 'trunk')).toBe(commit);
  });

  it('takes the author from GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL, else Cascade <cascade@localhost>', async () => {
    const saved = { name: process.env.GIT_AUTHOR_NAME, email: process.env.GIT_AUTHOR_EMAIL };
    try {
      process.env.GIT_AUTHOR_NAME = 'Env Person';
      process.env.GIT_AUTHOR_EMAIL = 'env@example.com';
      await initFleetRepository(path.join(tmp, 'from-env'));
      expect(gitOut(path.join(tmp, 'from-env'), 'log', '--format=%an <%ae>')).toBe('Env Person <env@example.com>');

      delete process.env.GIT_AUTHOR_NAME;
      delete process.env.GIT_AUTHOR_EMAIL;
      await initFleetRepository(path.join(tmp, 'default'));
      expect(gitOut(path.join(tmp, 'default'), 'log', '--format=%an <%ae>')).toBe('Cascade <cascade@localhost>');
    } finally {
      for (const [key, value] of [['GIT_AUTHOR_NAME', saved.name], ['GIT_AUTHOR_EMAIL', saved.email]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });

  it('refuses a directory that is not empty, says so, and leaves it untouched', async () => {
    const dir = path.join(tmp, 'busy');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine\n');
    const err = await expectCascadeError(initFleetRepository(dir, { author: AUTHOR }), 'init-target-not-empty');
    expect(err.message).toContain(dir);
    expect(err.message).toContain('not empty');
    expect(err.message).toContain('notes.txt');
    expect(fs.readdirSync(dir)).toEqual(['notes.txt']);
  });

  it('refuses a path that is a file', async () => {
    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, 'x');
    await expectCascadeError(initFleetRepository(file, { author: AUTHOR }), 'init-target-not-directory');
    expect(fs.readFileSync(file, 'utf8')).toBe('x');
  });

  it('refuses an invalid branch name before creating anything', async () => {
    const dir = path.join(tmp, 'never');
    const err = await expectCascadeError(initFleetRepository(dir, { branch: 'bad..name' }), 'init-bad-branch');
    expect(err.message).toContain('--branch');
    expect(fs.existsSync(dir)).toBe(false);
  });
});

describe('cascade init', () => {
  const cli = path.join(PROJECT, 'bin', 'cascade.js');
  const run = (args: string[], cwd: string) =>
    spawnSync(process.execPath, [cli, ...args], {
      cwd,
      encoding: 'utf8',
      env: { ...process.env, GIT_AUTHOR_NAME: 'Cli User', GIT_AUTHOR_EMAIL: 'cli@example.com' },
    });

  it('creates a repository from any working directory and prints the commit', () => {
    const result = run(['init', 'fleet', '--branch', 'production', '--json'], tmp);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const printed = JSON.parse(result.stdout) as { dir: string; branch: string; commit: string; files: string[] };
    const dir = path.join(tmp, 'fleet');
    expect(printed.dir).toBe(dir);
    expect(printed.branch).toBe('production');
    expect(gitOut(dir, 'rev-parse', 'HEAD')).toBe(printed.commit);
    expect(gitOut(dir, 'log', '--format=%an <%ae>')).toBe('Cli User <cli@example.com>');
    expect(printed.files).toContain('fleet.yaml');

    const human = run(['init', 'second'], tmp);
    expect(human.status).toBe(0);
    expect(human.stdout).toContain(`Created a fleet repository in ${path.join(tmp, 'second')}`);
    expect(human.stdout).toContain(gitOut(path.join(tmp, 'second'), 'rev-parse', '--short=7', 'HEAD'));
  });

  it('exits 2 with the error code when the directory is not empty', () => {
    fs.writeFileSync(path.join(tmp, 'existing.txt'), 'x');
    const result = run(['init', '.'], tmp);
    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^cascade: \. is not empty \(contains existing\.txt\).*\[init-target-not-empty\]\n$/);
    expect(fs.readdirSync(tmp)).toEqual(['existing.txt']);
  });
});
