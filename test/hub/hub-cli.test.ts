import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { regionToken } from '../../src/protocol/hub-auth.js';
import { HUB_TOKEN, getJson, pushSummary, rollout, summary, tempDir, wave } from './hub-fixture.js';

const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));
const run = promisify(execFile);
const B = 'b'.repeat(40);

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function startHubProcess(args: string[]): Promise<{ url: string; child: ChildProcess; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, 'hub', '--listen', '127.0.0.1:0', ...args], {
    env: { ...process.env, CASCADE_LOG_FORMAT: 'json', CASCADE_HUB_TOKEN: HUB_TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /"url":"(http:\/\/[^"]+)"[^\n]*hub listening/.exec(stderr);
      if (match) resolve(match[1]!);
    });
    void exited.then((code) => reject(new Error(`hub exited with ${code} before listening:\n${stderr}`)));
  });
  cleanups.push(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  });
  return { url, child, exited };
}

describe('cascade hub', () => {
  it('prints the region token derived from the hub secret, from --token or the environment', async () => {
    const { stdout } = await run(process.execPath, [BIN, 'hub', 'region-token', 'eu-west', '--token', HUB_TOKEN]);
    expect(stdout.trim()).toBe(regionToken(HUB_TOKEN, 'eu-west'));
    const { stdout: viaEnv } = await run(process.execPath, [BIN, 'hub', 'token', 'eu-west'], { env: { ...process.env, CASCADE_HUB_TOKEN: HUB_TOKEN } });
    expect(viaEnv.trim()).toBe(regionToken(HUB_TOKEN, 'eu-west'));
    const bad = await run(process.execPath, [BIN, 'hub', 'region-token', 'eu west', '--token', HUB_TOKEN]).catch((err: { code: number; stderr: string }) => err);
    expect(bad).toMatchObject({ code: 2 });
    expect((bad as { stderr: string }).stderr).toContain('[region-name-invalid]');
  });

  it('refuses to start without its secret', async () => {
    const tmp = await tempDir('cascade-hub-cli-');
    cleanups.push(tmp.remove);
    const env = { ...process.env };
    delete env['CASCADE_HUB_TOKEN'];
    const err = await run(process.execPath, [BIN, 'hub', '--listen', '127.0.0.1:0', '--data', tmp.path], { env }).catch((e: { code: number; stderr: string }) => e);
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr).toContain('[hub-token-required]');
  });

  it('runs as a process, and `cascade status --hub-url` shows the fleet and one commit', async () => {
    const tmp = await tempDir('cascade-hub-cli-');
    cleanups.push(tmp.remove);
    const hub = await startHubProcess(['--data', tmp.path, '--stale-after', '30s']);
    expect((await getJson(`${hub.url}/healthz`)).body).toEqual({ ok: true });

    const halted = rollout('web', B, 'Halted', [wave(1, 10, { healthy: 1, failed: 2 }), wave(2, 100, { pending: 7 })], {
      currentWave: 1,
      halted: { reason: '2 of 3 attempted devices failed (67% >= 20%)', devices: ['d1', 'd2'], at: 1 },
    });
    await pushSummary(hub.url, summary('eu-west', { revision: { attempted: B, applied: B, error: null }, devices: { total: 10, converged: 1, updating: 0, failed: 2, offline: 7 }, rollouts: [halted] }));

    const text = await run(process.execPath, [BIN, 'status', '--hub-url', hub.url]);
    expect(text.stdout).toMatch(/fleet: 1 region\(s\)/);
    expect(text.stdout).toMatch(/eu-west\s+applied bbbbbbbb\s+10 devices: 1 converged, 0 updating, 2 failed, 7 offline/);
    expect(text.stdout).toContain('commit bbbbbbbb  Halted');
    expect(text.stdout).toContain('halted: web 2.0.0 in eu-west: at the halt (1970-01-01T00:00:00Z): 2 of 3 attempted devices failed');
    // The halt line's "now" figures are the wave rows' own (one function computes both).
    expect(text.stdout).toContain('now: 2 failed, 0 updating, 1 healthy, 7 waiting of 10');
    expect(text.stdout).toContain('wave 1/2: 1/10 converged, 0 updating, 7 waiting, 2 failed');
    expect(text.stdout).toContain(`undo:   git revert ${B}`);

    const one = await run(process.execPath, [BIN, 'status', '--hub-url', hub.url, '--revision', 'bbbbbbb', '--json']);
    expect(JSON.parse(one.stdout)).toMatchObject({ revision: B, state: 'Halted', regions: [{ region: 'eu-west', applied: true }] });

    const missing = await run(process.execPath, [BIN, 'status', '--hub-url', hub.url, '--revision', 'cccccccc']).catch((e: { code: number; stderr: string }) => e);
    expect(missing).toMatchObject({ code: 2 });

    hub.child.kill('SIGTERM');
    expect(await hub.exited).toBe(0);
  });
});
