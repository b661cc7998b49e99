import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CascadeEvent } from '../../../src/protocol/events.js';
import type { RegionStatus } from '../../../src/reconciler/region-status.js';
import { startSimulation, type Simulation } from '../../../src/simulate/simulation.js';
import { commitFiles, makeLocalRepo } from '../../support/git-fixtures.js';
import type { Mosquitto } from '../../support/mosquitto.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../../support/region-process.js';
import { MOSQUITTO, requireTool } from '../../support/requirements.js';
import { smallFleet, webDeployment } from '../../support/small-fleet.js';
import { REGION, REGION_USER, resetBroker, startAclBroker } from './mqtt-fixture.js';

/** A region process and simulated devices that report over a private Mosquitto (its own port, users and ACL). */
const missing = await requireTool(MOSQUITTO);

const TOKEN = 'events-mqtt-enrolment';
const DEVICES = 4;

let root: string;
let repo: string;
let broker: Mosquitto;
let region: RegionProcess;
let sim: Simulation;

async function status(): Promise<RegionStatus> {
  return (await (await fetch(`${region.url}/api/v1/status`)).json()) as RegionStatus;
}

beforeAll(async () => {
  if (missing) return;
  root = await mkdtemp(join(tmpdir(), 'cascade-mqtt-events-'));
  broker = await startAclBroker();
  repo = join(root, 'fleet');
  await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: null, rollout: '    waves: [100]\n    failureThreshold: 1\n' }));
  region = await startRegionProcess(
    [
      '--repo', repo, '--region', REGION, '--data', join(root, 'region'), '--interval', '1h', '--enrollment-token', TOKEN,
      '--mqtt-url', broker.url, '--mqtt-username', REGION_USER.username,
      '--mqtt-device-passwords', broker.passwordFile, '--mqtt-broker-pid-file', broker.pidFile,
    ],
    { CASCADE_MQTT_PASSWORD: REGION_USER.password },
  );
  sim = await startSimulation({
    regionUrl: region.url, devices: DEVICES, enrollmentToken: TOKEN, prefix: 'mq', applyMs: 20, initial: { web: '1.0.0' },
    statsIntervalMs: 0, waitSeconds: 5, failVersion: '2.0.0', mqtt: { url: broker.url },
  });
}, 120_000);

afterAll(async () => {
  if (missing) return;
  await sim?.stop();
  await region?.kill('SIGTERM');
  if (broker) await resetBroker(broker.url);
  await broker?.stop();
  await rm(root, { recursive: true, force: true });
});

describe.skipIf(missing)('events from devices that report over MQTT', () => {
  it('a version that fails on devices reporting over MQTT streams device.failed with app and attempted version', async () => {
    await waitFor(async () => ((await status()).devices.converged === DEVICES ? true : undefined), 60_000, async () => JSON.stringify(await status()));
    const head = await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0 over mqtt');
    await fetch(`${region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
    const failed = await waitFor(async () => {
      const body = (await (await fetch(`${region.url}/api/v1/events?format=json`)).json()) as { events: CascadeEvent[] };
      return body.events.find((e) => e.type === 'device.failed') ?? undefined;
    }, 60_000, async () => JSON.stringify(await status()));
    expect(failed).toMatchObject({ app: 'web', version: '2.0.0', running: '1.0.0', revision: head, region: REGION });
    expect(sim.deviceIds).toContain(failed.device);
    // The reports came over the broker, not HTTP.
    const metrics = await (await fetch(`${region.url}/metrics`)).text();
    const recorded = metrics.split('\n').find((l) => l.startsWith('cascade_mqtt_reports_total{') && l.includes('outcome="recorded"'));
    expect(Number(recorded?.slice(recorded.lastIndexOf(' ') + 1) ?? 0)).toBeGreaterThanOrEqual(DEVICES);
  }, 120_000);
});
