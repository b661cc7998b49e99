import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegionStatus } from '../../../src/reconciler/region-status.js';
import { commitFiles, makeLocalRepo } from '../../support/git-fixtures.js';
import type { Mosquitto } from '../../support/mosquitto.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../../support/region-process.js';
import { smallFleet, webDeployment } from '../../support/small-fleet.js';
import { MOSQUITTO, requireTool } from '../../support/requirements.js';
import { OBSERVER, REGION, REGION_USER, connectRecorder, resetBroker, startAclBroker, type Recorder } from './mqtt-fixture.js';

/** Every test here runs against a private Mosquitto (its own port, users and ACL). */
const missing = await requireTool(MOSQUITTO);

const ROOT = resolve(import.meta.dirname, '../../..');
const TOKEN = 'e2e-mqtt-enrolment';
const DEVICES = ['dev-a', 'dev-b'];

let root: string;
let repo: string;
let broker: Mosquitto;
let region: RegionProcess;
let observer: Recorder;
const agents: ChildProcess[] = [];
const agentLogs: string[] = [];

async function status(): Promise<RegionStatus> {
  return (await (await fetch(`${region.url}/api/v1/status`)).json()) as RegionStatus;
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${region.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

async function converged(revision: string): Promise<RegionStatus> {
  return waitFor(
    async () => {
      const s = await status();
      return s.revision.applied === revision && s.devices.converged === DEVICES.length ? s : undefined;
    },
    30_000,
    async () => `convergence on ${revision.slice(0, 8)}: ${JSON.stringify(await status())}\nagents: ${agentLogs.join('').slice(-3000)}`,
  );
}

function desiredSeen(): number {
  return observer.messages.filter((m) => m.topic.endsWith('/desired')).length;
}

beforeAll(async () => {
  if (missing) return;
  root = await mkdtemp(join(tmpdir(), 'cascade-mqtt-e2e-'));
  broker = await startAclBroker();
  repo = join(root, 'fleet');
  await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: null }));
  region = await startRegionProcess(
    [
      '--repo', repo,
      '--region', REGION,
      '--data', join(root, 'region'),
      '--interval', '1h',
      '--enrollment-token', TOKEN,
      '--mqtt-url', broker.url,
      '--mqtt-username', REGION_USER.username,
      '--mqtt-device-passwords', broker.passwordFile,
      '--mqtt-broker-pid-file', broker.pidFile,
    ],
    { CASCADE_MQTT_PASSWORD: REGION_USER.password },
  );
  observer = await connectRecorder(broker.url, { ...OBSERVER, clientId: OBSERVER.username });
  await observer.client.subscribeAsync(`cascade/${REGION}/+/desired`, { qos: 1 });
  for (const deviceId of DEVICES) {
    const agent = spawn(
      process.execPath,
      [join(ROOT, 'bin/cascade.js'), 'agent', '--region-url', region.url, '--device-id', deviceId, '--state-dir', join(root, deviceId), '--enrollment-token', TOKEN, '--runtime', 'simulated', '--apply-ms', '20', '--mqtt-url', broker.url],
      { env: { ...process.env, CASCADE_LOG_FORMAT: 'json' }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    agent.stderr!.on('data', (chunk: Buffer) => agentLogs.push(chunk.toString()));
    agents.push(agent);
  }
});

afterAll(async () => {
  if (missing) return;
  await Promise.all(agents.map((agent) => new Promise((done) => (agent.exitCode !== null ? done(null) : (agent.once('exit', done), agent.kill('SIGTERM'))))));
  await observer?.close();
  await region?.kill('SIGTERM');
  if (broker) await resetBroker(broker.url);
  await broker?.stop();
  await rm(root, { recursive: true, force: true });
});

describe.skipIf(missing)('cascade region and cascade agent over MQTT (real processes, private Mosquitto with per-device ACL)', () => {
  it('agents converge on the first revision, then on a commit, with one message per device whose state changed', async () => {
    const applied = await waitFor(async () => (await status()).revision.applied ?? undefined, 30_000, () => 'the first revision');
    const first = await converged(applied);
    expect(desiredSeen()).toBe(first.updatesSent);
    expect(await metric('cascade_mqtt_reports_total', 'outcome="recorded"')).toBeGreaterThanOrEqual(DEVICES.length);

    const head = await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    await fetch(`${region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
    const second = await converged(head);
    expect(second.updatesSent - first.updatesSent).toBe(DEVICES.length);
    expect(desiredSeen()).toBe(second.updatesSent);
    expect(await metric('cascade_mqtt_desired_published_total')).toBe(second.updatesSent);

    // A commit that changes nothing for any device publishes nothing.
    const noop = await commitFiles(repo, { 'README.md': 'fleet\n' }, 'docs');
    await fetch(`${region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
    await converged(noop);
    expect(await metric('cascade_mqtt_desired_published_total')).toBe(second.updatesSent);
    expect(desiredSeen()).toBe(second.updatesSent);
    expect(await metric('cascade_mqtt_reports_total', 'outcome="identity-mismatch"')).toBe(0);
  });
});
