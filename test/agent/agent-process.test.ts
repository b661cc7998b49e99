import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArtifactServer } from './artifact-server.js';
import { ENROLLMENT_TOKEN, RegionFixture, until } from './region-fixture.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DEVICE = 'edge-proc-1';
let region: RegionFixture;
let artifacts: ArtifactServer;
let dir: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  region = await RegionFixture.start();
  artifacts = await ArtifactServer.start();
  dir = mkdtempSync(join(tmpdir(), 'cascade-agent-proc-'));
});
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((done) => child.once('exit', done));
    }
  }
  await artifacts.close();
  await region.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Agent {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function startAgent(args: string[], env: Record<string, string> = {}): Agent {
  const child = spawn(process.execPath, [join(ROOT, 'bin/cascade.js'), 'agent', ...args], {
    cwd: ROOT,
    env: { ...process.env, CASCADE_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return { child, stderr: () => stderr, exited };
}

const reportSeq = (): number => (JSON.parse(readFileSync(join(dir, 'agent', 'agent-state.json'), 'utf8')) as { reportSeq: number }).reportSeq;

const installs = () => {
  const path = join(dir, 'installs.log');
  return existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n') : [];
};

describe('cascade agent (a real process)', () => {
  it('does not reinstall after being killed and started again', async () => {
    const first = startAgent([
      '--region-url', region.url,
      '--device-id', DEVICE,
      '--labels', 'ring=canary,site=lab',
      '--state-dir', join(dir, 'agent'),
      '--enrollment-token', ENROLLMENT_TOKEN,
      '--wait', '30',
      // The test's artifact server is on 127.0.0.1: a local origin must be named to be allowed.
      '--allow-artifact-origin', `${artifacts.url}/`,
    ]);
    await until(() => region.store.getDevice(DEVICE) !== null, 30_000, `enrolment (stderr: ${first.stderr()})`);
    expect(region.store.getDevice(DEVICE)!.labels).toEqual({ ring: 'canary', site: 'lab' });

    const v1 = artifacts.add('/web-1.0.0.tgz', 'web one');
    writeFileSync(join(dir, 'healthy'), '');
    region.handOut([DEVICE], { web: { version: '1.0.0', deployment: 'web-all' } }, {
      web: {
        runtime: { type: 'exec', install: `echo install {version} >> ${dir}/installs.log && cp {artifact} ${dir}/current` },
        artifacts: { '1.0.0': v1 },
        healthCheck: { exec: `test -f ${dir}/healthy`, timeout: '5s' },
      },
    });
    await until(() => region.store.getDevice(DEVICE)?.apps.web?.state === 'healthy', 30_000, 'healthy report');
    await until(() => region.watchers.size === 1, 30_000, 'the agent to wait');
    expect(installs()).toEqual(['install 1.0.0']);

    const seqBefore = reportSeq();
    expect(seqBefore).toBeGreaterThan(0);
    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull();
    await until(() => region.watchers.size === 0, 10_000, 'the killed agent\'s poll to be dropped');
    const reportsBefore = region.reportsOf(DEVICE);

    // The same agent again, configured through the environment this time.
    const second = startAgent([], {
      CASCADE_REGION_URL: region.url,
      CASCADE_DEVICE_ID: DEVICE,
      CASCADE_LABELS: 'ring=canary,site=lab',
      CASCADE_STATE_DIR: join(dir, 'agent'),
      CASCADE_ENROLLMENT_TOKEN: ENROLLMENT_TOKEN,
      CASCADE_ALLOW_ARTIFACT_ORIGIN: `${artifacts.url}/`,
    });
    await until(() => region.reportsOf(DEVICE) > reportsBefore && region.watchers.size === 1, 30_000, `the restarted agent to settle (stderr: ${second.stderr()})`);
    expect(installs()).toEqual(['install 1.0.0']);
    expect(region.store.getDevice(DEVICE)!.apps.web).toEqual({ version: '1.0.0', state: 'healthy' });
    // It kept its token: no second enrolment.
    expect(second.stderr()).not.toContain('"msg":"enrolled"');
    // Its report sequence number went on from where it was, across the kill.
    expect(reportSeq()).toBeGreaterThan(seqBefore);

    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });

  it('exits with an error when the enrollment token is wrong', async () => {
    const agent = startAgent([
      '--region-url', region.url,
      '--device-id', DEVICE,
      '--state-dir', join(dir, 'agent'),
      '--enrollment-token', 'wrong',
    ]);
    expect(await agent.exited).toBe(2);
    expect(agent.stderr()).toMatch(/cascade: .*the enrollment token is wrong.* \[enrollment-token-invalid\]/);
    expect(region.store.getDevice(DEVICE)).toBeNull();
  });
});
