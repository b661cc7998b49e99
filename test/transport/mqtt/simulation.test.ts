import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulation } from '../../../src/simulate/simulation.js';
import type { Mosquitto } from '../../support/mosquitto.js';
import { MOSQUITTO, requireTool } from '../../support/requirements.js';
import { ENROLLMENT_TOKEN, MqttRegion, quietLog, resetBroker, startAclBroker, until } from './mqtt-fixture.js';

/** Every test here runs against a private Mosquitto (its own port, users and ACL). */
const missing = await requireTool(MOSQUITTO);

const ROOT = resolve(import.meta.dirname, '../../..');
const web = (version: string) => ({ web: { version, deployment: 'web-all' } });

let broker: Mosquitto;
let region: MqttRegion;

beforeAll(async () => {
  if (missing) return;
  broker = await startAclBroker();
  region = await MqttRegion.start(broker);
});
afterAll(async () => {
  if (missing) return;
  await region?.close();
  await resetBroker(broker.url);
  await broker?.stop();
});

function versions(ids: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const id of ids) {
    const report = region.store.getDevice(id)?.apps['web'];
    const key = `${report?.version ?? 'none'}/${report?.state ?? 'none'}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

describe.skipIf(missing)('simulated devices over MQTT', () => {
  it('30 devices enrol over HTTP, then converge over MQTT with one message per device', async () => {
    const simulation = await startSimulation({
      regionUrl: region.url,
      devices: 30,
      prefix: 'mq',
      enrollmentToken: ENROLLMENT_TOKEN,
      applyMs: 10,
      initial: { web: '1.0.0' },
      statsIntervalMs: 0,
      log: quietLog,
      mqtt: { url: broker.url },
    });
    try {
      await until(() => versions(simulation.deviceIds)['1.0.0/healthy'] === 30, 30_000, 'first reports');
      const published = region.transport.published();
      expect(await region.handOut([...simulation.deviceIds], web('2.0.0'))).toBe(30);
      await until(() => versions(simulation.deviceIds)['2.0.0/healthy'] === 30, 30_000, `convergence: ${JSON.stringify(versions(simulation.deviceIds))}`);
      expect(region.transport.published() - published).toBe(30);
      expect(simulation.stats()).toMatchObject({ applied: 30, failed: 0, fatal: 0, versions: { web: { '2.0.0': 30 } } });
      expect(region.transport.stats().dropped).toEqual({ invalid: 0, identityMismatch: 0, unknownDevice: 0 });
    } finally {
      await simulation.stop();
    }
  });

  it('`cascade simulate --mqtt-url` (a real process) converges too', async () => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/cascade.js'), 'simulate', '--region-url', region.url, '--devices', '4', '--prefix', 'cli', '--enrollment-token', ENROLLMENT_TOKEN, '--apply-ms', '10', '--initial', 'web=1.0.0', '--mqtt-url', broker.url], {
      cwd: ROOT,
      env: { ...process.env, CASCADE_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    const ids = ['cli-0001', 'cli-0002', 'cli-0003', 'cli-0004'];
    try {
      await until(() => versions(ids)['1.0.0/healthy'] === 4, 30_000, `first reports (stderr: ${stderr})`);
      const recorded = region.transport.stats().reportsRecorded;
      await region.handOut(ids, web('3.0.0'));
      await until(() => versions(ids)['3.0.0/healthy'] === 4, 30_000, `convergence (stderr: ${stderr})`);
      // installing + healthy from each device, all over MQTT
      expect(region.transport.stats().reportsRecorded - recorded).toBe(8);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(stderr).toContain('simulate: 4 devices, 4 enrolled, 0 offline, 0 applying, 4 updated, 0 failed updates, 0 failing now');
  });
});
