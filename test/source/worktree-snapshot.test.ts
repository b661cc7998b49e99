import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CascadeError } from '../../src/core/errors.js';
import { readWorktreeSnapshot } from '../../src/source/worktree-snapshot.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function makeTree(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-worktree-'));
  dirs.push(dir);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

describe('readWorktreeSnapshot', () => {
  it('lists YAML files sorted by path, skipping hidden paths, node_modules, other files and what .cascadeignore says', async () => {
    const dir = makeTree({
      '.cascadeignore': '# drafts are not part of the fleet\ndrafts/\n*.tmp.yaml\n!keep.tmp.yaml\n/root-only.yaml\n',
      'b.yml': 'b: 1\n',
      'a.yaml': 'a: 1\n',
      'Upper.YAML': 'u: 1\n',
      'nested/deep/x.yaml': 'x: 1\n',
      'nested/.hidden.yaml': 'h: 1\n',
      'nested/root-only.yaml': 'kept: because the pattern is anchored to the root\n',
      'root-only.yaml': 'ignored: 1\n',
      '.github/workflows/ci.yaml': 'on: push\n',
      'node_modules/pkg/x.yaml': 'n: 1\n',
      'drafts/wip.yaml': 'w: 1\n',
      'nested/drafts/wip.yaml': 'w: 2\n',
      'scratch.tmp.yaml': 't: 1\n',
      'keep.tmp.yaml': 'k: 1\n',
      'README.md': '# fleet\n',
      'values.json': '{}',
    });
    symlinkSync(join(dir, 'a.yaml'), join(dir, 'link.yaml'));
    const snapshot = await readWorktreeSnapshot(dir);
    expect(snapshot.revision).toBeNull();
    expect(snapshot.files.map((f) => f.path)).toEqual([
      'Upper.YAML',
      'a.yaml',
      'b.yml',
      'keep.tmp.yaml',
      'nested/deep/x.yaml',
      'nested/root-only.yaml',
    ]);
  });

  it('identifies each file by the blob id git gives its content, and reads exactly those bytes', async () => {
    const dir = makeTree({ 'a.yaml': 'apiVersion: cascade/v1\n', 'b/c.yaml': 'é: "ü"\n', 'empty.yaml': '' });
    const snapshot = await readWorktreeSnapshot(dir);
    for (const file of snapshot.files) {
      const gitId = execFileSync('git', ['hash-object', join(dir, file.path)], { encoding: 'utf8' }).trim();
      expect(file.id).toBe(gitId);
      const content = await file.read();
      expect(file.size).toBe(content.byteLength);
    }
    expect(new TextDecoder().decode(await snapshot.files[1]!.read())).toBe('é: "ü"\n');
  });

  it('hashes big files without keeping them', async () => {
    const big = 'a: ' + 'x'.repeat(1_500_000) + '\n';
    const dir = makeTree({ 'big.yaml': big });
    const [file] = (await readWorktreeSnapshot(dir)).files;
    expect(file!.size).toBe(big.length);
    expect(file!.id).toBe(execFileSync('git', ['hash-object', join(dir, 'big.yaml')], { encoding: 'utf8' }).trim());
  });

  it('says what to do when the directory does not exist', async () => {
    const error = await readWorktreeSnapshot('/nonexistent/fleet').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CascadeError);
    expect((error as CascadeError).code).toBe('no-such-dir');
  });
});
