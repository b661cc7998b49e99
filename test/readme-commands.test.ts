import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { git, gitEnv } from './support/git-fixtures.js';
import { CLI, runCli } from './support/run-cli.js';

/**
 * The commands the READMEs show work: every fenced ```sh block right after a `<!-- cascade:test -->`
 * line runs, in document order, with `bash -e -o pipefail`, and must exit 0. README.md's run in the
 * project (they read fleet-repo-template/ and examples/, and use `npx cascade` as a fresh clone does);
 * fleet-repo-template/README.md's run in a throwaway fleet repository made by `cascade init`, cloned
 * so that it has an `origin`, with `cascade` on PATH.
 */
const PROJECT = fileURLToPath(new URL('../', import.meta.url));

export function testedBlocks(markdown: string): Array<{ line: number; script: string }> {
  const blocks: Array<{ line: number; script: string }> = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== '<!-- cascade:test -->') continue;
    const fence = lines[i + 1] ?? '';
    if (!/^```(sh|bash)\s*$/.test(fence)) throw new Error(`line ${i + 1}: <!-- cascade:test --> must be followed by a \`\`\`sh block`);
    const end = lines.indexOf('```', i + 2);
    if (end === -1) throw new Error(`line ${i + 2}: unterminated code block`);
    blocks.push({ line: i + 3, script: lines.slice(i + 2, end).join('\n') });
  }
  return blocks;
}

function bash(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile('bash', ['--noprofile', '--norc', '-e', '-o', 'pipefail', '-c', script], { cwd, env, maxBuffer: 16 * 1024 * 1024, timeout: 240_000 }, (err) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output });
    });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  });
}

let root: string;
let bin: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-readme-'));
  bin = join(root, 'bin');
  await mkdir(bin);
  await symlink(CLI, join(bin, 'cascade'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const env = (): NodeJS.ProcessEnv => ({ ...gitEnv(), PATH: `${bin}:${process.env['PATH']}`, CASCADE_LOG_LEVEL: 'warn', CASCADE_REGION_URL: undefined, CASCADE_CONTEXT: undefined });

describe('README.md', () => {
  it('the quick start commands run', async () => {
    const blocks = testedBlocks(await readFile(join(PROJECT, 'README.md'), 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(1);
    for (const block of blocks) {
      const result = await bash(block.script, PROJECT, env());
      expect(result.code, `README.md:${block.line}:\n${block.script}\n---\n${result.output}`).toBe(0);
    }
  }, 240_000);
});

describe('fleet-repo-template/README.md', () => {
  it('the rollout and rollback walk-through and the pull-request checks run in a new fleet repository', async () => {
    const blocks = testedBlocks(await readFile(join(PROJECT, 'fleet-repo-template/README.md'), 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    const seed = join(root, 'seed');
    expect((await runCli(['init', seed])).code).toBe(0);
    await copyFile(join(PROJECT, 'examples/inventory.json'), join(seed, 'inventory.json'));
    await git(seed, ['add', 'inventory.json']);
    await git(seed, ['commit', '-q', '-m', 'inventory of the example devices']);
    const repo = join(root, 'fleet');
    await git(root, ['clone', '-q', seed, repo]);
    const outputs: string[] = [];
    for (const block of blocks) {
      const result = await bash(block.script, repo, env());
      expect(result.code, `fleet-repo-template/README.md:${block.line}:\n${block.script}\n---\n${result.output}`).toBe(0);
      outputs.push(result.output);
    }
    // The walk-through did what it says: a rollout, then its revert.
    const log = await git(repo, ['log', '--format=%s', '-3']);
    expect(log.split('\n')[0]).toMatch(/^Revert "telemetry-forwarder 0\.15\.0"/);
    expect(outputs.join('\n')).toContain('30 devices in 3 regions change: 30 upgrades');
    expect(outputs.join('\n')).toContain('30 devices in 3 regions change: 30 downgrades');
  }, 240_000);
});
