import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileAgentState } from '../../src/agent/agent-state.js';
import { runDeviceLoop, type DeviceEvent } from '../../src/agent/device-loop.js';
import { ExecRuntime } from '../../src/agent/runtime-exec.js';
import type { AppReport } from '../../src/core/types.js';
import { RegionClient } from '../../src/agent/http/region-client.js';
import type { AppCatalog } from '../../src/reconciler/state-store.js';
import { ArtifactServer } from './artifact-server.js';
import { ENROLLMENT_TOKEN, RegionFixture, until } from './region-fixture.js';

const DEVICE = 'edge-001';
let region: RegionFixture;
let artifacts: ArtifactServer;
let dir: string;
let agents: { stop: () => Promise<void> }[];

beforeEach(async () => {
  region = await RegionFixture.start();
  artifacts = await ArtifactServer.start();
  dir = mkdtempSync(join(tmpdir(), 'cascade-agent-'));
  agents = [];
});
afterEach(async () => {
  for (const agent of agents) await agent.stop();
  await artifacts.close();
  await region.close();
  rmSync(dir, { recursive: true, force: true });
});

interface RunningAgent {
  events: DeviceEvent[];
  stop: () => Promise<void>;
}

function startAgent(): RunningAgent {
  const events: DeviceEvent[] = [];
  const controller = new AbortController();
  const done = runDeviceLoop(
    {
      client: new RegionClient({ regionUrl: region.url, deviceId: DEVICE }),
      labels: { ring: 'canary' },
      enrollmentToken: ENROLLMENT_TOKEN,
      // The test's artifact server is on 127.0.0.1: allowed by naming it, as --allow-artifact-origin does.
      runtime: new ExecRuntime({ stateDir: join(dir, 'agent'), healthIntervalMs: 10, artifactPolicy: { allowOrigins: [`${artifacts.url}/`] } }),
      state: new FileAgentState(join(dir, 'agent')),
      log: pino({ level: 'silent' }),
      waitSeconds: 30,
      backoff: { initialMs: 20, maxMs: 200 },
      onEvent: (event) => events.push(event),
    },
    controller.signal,
  );
  const agent = {
    events,
    stop: async () => {
      controller.abort();
      await done;
    },
  };
  agents.push(agent);
  return agent;
}

const installLog = () => join(dir, 'installs.log');
const installs = () => (existsSync(installLog()) ? readFileSync(installLog(), 'utf8').trim().split('\n') : []);
const current = () => readFileSync(join(dir, 'current'), 'utf8');
const markHealthy = (version: string) => writeFileSync(join(dir, `healthy-${version}`), '');

function catalog(files: Record<string, { url: string; sha256: string; size: number }>): AppCatalog {
  return {
    web: {
      runtime: {
        type: 'exec',
        install: `echo install {version} >> ${installLog()} && cp {artifact} ${dir}/current`,
        stop: `echo stop {version} >> ${installLog()}`,
      },
      artifacts: files,
      healthCheck: { exec: `test -f ${dir}/healthy-{version}`, retries: 1, timeout: '5s' },
    },
  };
}

function web(version: string) {
  return { web: { version, deployment: 'web-all' } };
}

function reported(): Record<string, AppReport> | undefined {
  return region.store.getDevice(DEVICE)?.apps;
}

/** The agent is idle: its long poll is held by the region. */
async function idle(): Promise<void> {
  await until(() => region.watchers.size === 1, 20_000, 'the agent to wait for desired state');
}

async function installedOne(version: string, files: AppCatalog): Promise<void> {
  markHealthy(version);
  region.handOut([DEVICE], web(version), files);
  await until(() => reported()?.web?.state === 'healthy' && reported()?.web?.version === version, 20_000, `web ${version} healthy`);
  await idle();
}

describe('device agent with the exec runtime', () => {
  it('enrols, keeps its token 0600, installs a verified artifact and reports healthy', async () => {
    startAgent();
    await until(() => region.store.getDevice(DEVICE) !== null, 20_000, 'enrolment');
    const v1 = artifacts.add('/web-1.0.0.tgz', 'web one');
    await installedOne('1.0.0', catalog({ '1.0.0': v1 }));
    expect(current()).toBe('web one');
    expect(installs()).toEqual(['install 1.0.0']);
    expect(region.store.getDevice(DEVICE)!.labels).toEqual({ ring: 'canary' });
    const statePath = join(dir, 'agent', 'agent-state.json');
    expect(statSync(statePath).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(statePath, 'utf8'))).toMatchObject({ deviceId: DEVICE, installed: { web: { version: '1.0.0' } } });
  });

  it('refuses an artifact with the wrong sha256 and keeps the old version running', async () => {
    startAgent();
    const v1 = artifacts.add('/web-1.0.0.tgz', 'web one');
    await installedOne('1.0.0', catalog({ '1.0.0': v1 }));
    const v2 = { ...artifacts.add('/web-2.0.0.tgz', 'web two (tampered)'), sha256: 'f'.repeat(64) };
    markHealthy('2.0.0');
    region.handOut([DEVICE], web('2.0.0'), catalog({ '1.0.0': v1, '2.0.0': v2 }));
    await until(() => reported()?.web?.state === 'failed', 20_000, 'failed report');
    expect(reported()!.web).toEqual({ version: '1.0.0', state: 'failed', message: expect.stringMatching(/version 2\.0\.0: .*sha256 .* is [0-9a-f]{64}, the fleet repository says f{64}; not installed; 1\.0\.0 keeps running/) });
    expect(current()).toBe('web one');
    // Nothing was stopped or installed: verification comes first.
    expect(installs()).toEqual(['install 1.0.0']);
  });

  it('refuses an artifact larger than declared', async () => {
    startAgent();
    const v1 = artifacts.add('/web-1.0.0.tgz', 'web one');
    await installedOne('1.0.0', catalog({ '1.0.0': v1 }));
    const v2 = { ...artifacts.add('/web-2.0.0.tgz', 'web two is far too big'), size: 5 };
    region.handOut([DEVICE], web('2.0.0'), catalog({ '1.0.0': v1, '2.0.0': v2 }));
    await until(() => reported()?.web?.state === 'failed', 20_000, 'failed report');
    expect(reported()!.web!.version).toBe('1.0.0');
    expect(reported()!.web!.message).toMatch(/more than the 5 the fleet repository declares/);
    expect(current()).toBe('web one');
  });

  it('goes back to the previous version when the new one fails its health check, and does not retry it', async () => {
    startAgent();
    const v1 = artifacts.add('/web-1.0.0.tgz', 'web one');
    await installedOne('1.0.0', catalog({ '1.0.0': v1 }));
    const v2 = artifacts.add('/web-2.0.0.tgz', 'web two');
    const files = catalog({ '1.0.0': v1, '2.0.0': v2 });
    region.handOut([DEVICE], web('2.0.0'), files);
    await until(() => reported()?.web?.state === 'failed', 20_000, 'failed report');
    expect(reported()!.web).toEqual({
      version: '1.0.0',
      state: 'failed',
      message: expect.stringMatching(/version 2\.0\.0: web 2\.0\.0 failed its health check 2 time\(s\): `test -f .*healthy-\{version\}` exited 1; running 1\.0\.0 again/),
    });
    expect(installs()).toEqual(['install 1.0.0', 'stop 1.0.0', 'install 2.0.0', 'stop 2.0.0', 'install 1.0.0']);
    expect(current()).toBe('web one');
    await idle();

    // A fresh agent on the same state does not try 2.0.0 again...
    await agents.pop()!.stop();
    const restarted = startAgent();
    await until(() => restarted.events.some((e) => e.type === 'desired'), 20_000, 'desired state after restart');
    await idle();
    expect(installs()).toHaveLength(5);
    expect(reported()!.web!.state).toBe('failed');

    // ...but does try the next version.
    const v3 = artifacts.add('/web-3.0.0.tgz', 'web three');
    await installedOne('3.0.0', catalog({ '1.0.0': v1, '2.0.0': v2, '3.0.0': v3 }));
    expect(current()).toBe('web three');
    expect(installs().slice(5)).toEqual(['stop 1.0.0', 'install 3.0.0']);
    // The old version's artifact is dropped once the new one is healthy.
    expect(existsSync(join(dir, 'agent', 'artifacts', 'web', '1.0.0'))).toBe(false);
    expect(existsSync(join(dir, 'agent', 'artifacts', 'web', '3.0.0', 'web-3.0.0.tgz'))).toBe(true);
  });

  it('stops and forgets an app the region no longer asks for', async () => {
    startAgent();
    const v1 = artifacts.add('/web-1.0.0.tgz', 'web one');
    await installedOne('1.0.0', catalog({ '1.0.0': v1 }));
    region.handOut([DEVICE], {});
    await until(() => reported() !== undefined && Object.keys(reported()!).length === 0, 20_000, 'empty report');
    expect(installs()).toEqual(['install 1.0.0', 'stop 1.0.0']);
    expect(existsSync(join(dir, 'agent', 'artifacts', 'web'))).toBe(false);
  });

  it('keeps retrying while the region is down and reports when it is back', async () => {
    const agent = startAgent();
    const v1 = artifacts.add('/web-1.0.0.tgz', 'web one');
    await installedOne('1.0.0', catalog({ '1.0.0': v1 }));
    await region.pause();
    await until(() => agent.events.filter((e) => e.type === 'connection-error').length >= 3, 20_000, 'retries while the region is down');
    const reportsBefore = region.reportsOf(DEVICE);
    await region.resume();
    await until(() => region.reportsOf(DEVICE) > reportsBefore, 20_000, 'a report once the region is back');
    await idle();
    const v2 = artifacts.add('/web-2.0.0.tgz', 'web two');
    await installedOne('2.0.0', catalog({ '1.0.0': v1, '2.0.0': v2 }));
    expect(agent.events.filter((e) => e.type === 'enrolled')).toHaveLength(1);
  });

  it('enrols again when the region no longer knows its token', async () => {
    const agent = startAgent();
    await idle();
    const v1 = artifacts.add('/web-1.0.0.tgz', 'web one');
    await installedOne('1.0.0', catalog({ '1.0.0': v1 }));
    // Someone re-enrols the same id: the agent's token is replaced and refused from now on.
    await new RegionClient({ regionUrl: region.url, deviceId: DEVICE }).enroll({}, ENROLLMENT_TOKEN);
    region.handOut([DEVICE], web('1.0.0'), catalog({ '1.0.0': v1 }));
    region.handOut([DEVICE], {});
    await until(() => agent.events.filter((e) => e.type === 'enrolled').length === 2, 20_000, 'second enrolment');
    await until(() => reported() !== undefined && Object.keys(reported()!).length === 0, 20_000, 'removal after re-enrolment');
  });
});
