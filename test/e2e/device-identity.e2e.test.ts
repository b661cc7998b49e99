import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { proofPayload } from '../../src/protocol/device-identity.js';
import { makeLocalRepo } from '../support/git-fixtures.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../support/region-process.js';
import { smallFleet } from '../support/small-fleet.js';

const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));
const run = promisify(execFile);
const TOKEN = 'identity-enrolment-token';
const OPS = 'identity-ops-token';

/** A client holding an Ed25519 key of its own, speaking the wire protocol with fetch. */
class KeyClient {
  readonly privateKey: KeyObject;
  readonly publicKey: string;

  constructor(
    readonly url: string,
    readonly deviceId: string,
  ) {
    this.privateKey = generateKeyPairSync('ed25519').privateKey;
    this.publicKey = createPublicKey(this.privateKey).export({ type: 'spki', format: 'der' }).toString('base64');
  }

  async proof(purpose: 'enroll' | 'renew-token'): Promise<{ nonce: string; signature: string }> {
    const challenge = (await (await post(`${this.url}/api/v1/devices/${this.deviceId}/challenge`, {})).json()) as { nonce: string; region: string };
    return { nonce: challenge.nonce, signature: sign(null, proofPayload(purpose, challenge.region, this.deviceId, challenge.nonce), this.privateKey).toString('base64') };
  }

  async enroll(proof?: { nonce: string; signature: string }): Promise<Response> {
    return post(`${this.url}/api/v1/enroll`, { deviceId: this.deviceId, labels: {}, enrollmentToken: TOKEN, publicKey: this.publicKey, proof: proof ?? (await this.proof('enroll')) });
  }
}

function post(url: string, body: unknown, token?: string): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
}

async function metric(url: string, line: RegExp): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const found = text.split('\n').find((l) => line.test(l));
  return found ? Number(found.split(' ').pop()) : 0;
}

describe('device identity bound to a key, against real region and agent processes', { timeout: 120_000 }, () => {
  let root: string;
  const cleanups: Array<() => Promise<unknown>> = [];
  const agents: ChildProcess[] = [];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-identity-'));
  });
  afterEach(async () => {
    for (const child of agents.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((done) => child.once('exit', done));
      }
    }
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    cleanups.length = 0;
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function region(name: string, args: string[] = []): Promise<RegionProcess> {
    const repo = await makeLocalRepo(join(root, `repo-${name}`), smallFleet({ web: '1.0.0' }));
    const r = await startRegionProcess(['--repo', repo.dir, '--region', 'us-east', '--data', join(root, `data-${name}`), '--interval', '1h', '--enrollment-token', TOKEN, '--operator-token', OPS, ...args]);
    cleanups.push(() => r.kill('SIGTERM'));
    return r;
  }

  function agent(r: RegionProcess, deviceId: string, stateDir: string): { child: ChildProcess; stderr: () => string } {
    const child = spawn(process.execPath, [BIN, 'agent', '--region-url', r.url, '--device-id', deviceId, '--state-dir', stateDir, '--enrollment-token', TOKEN, '--runtime', 'simulated', '--apply-ms', '10', '--wait', '5'], {
      env: { ...process.env, CASCADE_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    agents.push(child);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    return { child, stderr: () => stderr };
  }

  async function adminDevices(r: RegionProcess): Promise<Array<{ id: string; lastSeen: number | null }>> {
    return (await (await fetch(`${r.url}/api/v1/admin/devices`, { headers: { authorization: `Bearer ${OPS}` } })).json()) as Array<{ id: string; lastSeen: number | null }>;
  }

  it('a second client with only the enrolment token cannot take over an enrolled id; the real agent keeps working', async () => {
    const r = await region('takeover');
    const stateDir = join(root, 'agent-takeover');
    const real = agent(r, 'dev-1', stateDir);
    await waitFor(async () => ((await adminDevices(r)).some((d) => d.id === 'dev-1' && d.lastSeen !== null) ? true : undefined), 30_000, () => real.stderr());
    expect((await stat(join(stateDir, 'device-key.pem'))).mode & 0o777).toBe(0o600);
    const fingerprint = /device key (SHA256:[A-Za-z0-9+/]+)/.exec(real.stderr())![1]!;
    const listed = await run(process.execPath, [BIN, 'devices', 'list', '--region-url', r.url, '--operator-token', OPS]);
    expect(listed.stdout.split('\n').find((line) => line.startsWith('dev-1\tactive\t'))).toContain(`\tkey ${fingerprint}\t`);

    // The shared enrolment token alone: refused, logged at warn, counted.
    const keyless = await post(`${r.url}/api/v1/enroll`, { deviceId: 'dev-1', labels: {}, enrollmentToken: TOKEN });
    expect(keyless.status).toBe(403);
    expect(((await keyless.json()) as { error: { code: string } }).error.code).toBe('device-key-required');
    // A key of its own, properly proven: still not the id's key.
    const impostor = new KeyClient(r.url, 'dev-1');
    const withOwnKey = await impostor.enroll();
    expect(withOwnKey.status).toBe(403);
    // A proof that does not verify (signed for another device id).
    const forged = await impostor.proof('enroll');
    const other = await post(`${r.url}/api/v1/enroll`, { deviceId: 'dev-1', labels: {}, enrollmentToken: TOKEN, publicKey: impostor.publicKey, proof: { ...forged, signature: sign(null, proofPayload('enroll', 'us-east', 'dev-2', forged.nonce), impostor.privateKey).toString('base64') } });
    expect(other.status).toBe(403);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe('device-key-proof-invalid');
    expect(await metric(r.url, /^cascade_enrollment_refusals_total\{.*reason="key-required"/)).toBe(1);
    expect(await metric(r.url, /^cascade_enrollment_refusals_total\{.*reason="key-mismatch"/)).toBe(1);
    expect(await metric(r.url, /^cascade_enrollment_refusals_total\{.*reason="proof-invalid"/)).toBe(1);
    expect(r.logs.filter((l) => l['level'] === 40 && String(l['msg']).includes('enrolment of dev-1 refused'))).toHaveLength(3);

    // The real agent was never evicted: it still reports (its lastSeen moves on) and never enrolled again.
    const before = (await adminDevices(r)).find((d) => d.id === 'dev-1')!.lastSeen!;
    await waitFor(async () => ((await adminDevices(r)).find((d) => d.id === 'dev-1')!.lastSeen! > before ? true : undefined), 30_000, () => 'a later poll of the real agent');
    expect(real.stderr().match(/"msg":"enrolled"/g)).toHaveLength(1);

    // After an operator reset the id is free: a new key binds it.
    await run(process.execPath, [BIN, 'devices', 'reset', 'dev-1', '--region-url', r.url, '--operator-token', OPS]);
    expect((await impostor.enroll()).status).toBe(201);
  });

  it('a device renews its token by signing a challenge; a spent nonce cannot be replayed', async () => {
    const r = await region('renew');
    const device = new KeyClient(r.url, 'dev-r');
    const first = (await (await device.enroll()).json()) as { token: string };
    const proof = await device.proof('renew-token');
    const renewed = await post(`${r.url}/api/v1/devices/dev-r/token`, { proof });
    expect(renewed.status).toBe(201);
    const { token } = (await renewed.json()) as { token: string };
    const desired = (t: string) => fetch(`${r.url}/api/v1/devices/dev-r/desired`, { headers: { authorization: `Bearer ${t}` } });
    expect((await desired(token)).status).toBe(200);
    expect((await desired(first.token)).status).toBe(401);
    // The same proof again (a replay seen on the wire): refused.
    expect((await post(`${r.url}/api/v1/devices/dev-r/token`, { proof })).status).toBe(403);
    // A proof made for enrolment does not renew a token.
    expect((await post(`${r.url}/api/v1/devices/dev-r/token`, { proof: await device.proof('enroll') })).status).toBe(403);
  });

  it('keyless enrolment (agents before keys) still works for ids never bound to a key; the first key binds', async () => {
    const r = await region('legacy');
    const legacy = () => post(`${r.url}/api/v1/enroll`, { deviceId: 'old-1', labels: {}, enrollmentToken: TOKEN });
    expect((await legacy()).status).toBe(201);
    expect((await legacy()).status).toBe(201);
    const upgraded = new KeyClient(r.url, 'old-1');
    expect((await upgraded.enroll()).status).toBe(201);
    expect((await legacy()).status).toBe(403);
  });

  it('with --enrollment-policy approve a new agent waits until `cascade devices approve`, then converges', async () => {
    const r = await region('approve', ['--enrollment-policy', 'approve']);
    const stateDir = join(root, 'agent-approve');
    const waiting = agent(r, 'dev-new', stateDir);
    const cli = (args: string[]) => run(process.execPath, [BIN, 'devices', ...args, '--region-url', r.url, '--operator-token', OPS]);
    const pending = await waitFor(async () => {
      const { stdout } = await cli(['list', '--pending']);
      return stdout.includes('dev-new\tPENDING') ? stdout : undefined;
    }, 30_000, () => waiting.stderr());
    // The fingerprint the operator sees is the one the agent logged at start.
    const logged = /device key (SHA256:[A-Za-z0-9+/]+)/.exec(waiting.stderr())![1]!;
    expect(pending).toContain(`key ${logged}`);
    // The region's dashboard lists it too, with the same key.
    const onDashboard = (await (await fetch(`${r.url}/api/v1/dashboard/pending`, { headers: { authorization: `Bearer ${OPS}` } })).json()) as Array<{ id: string; key: string }>;
    expect(onDashboard).toEqual([expect.objectContaining({ id: 'dev-new', key: logged })]);
    expect((await adminDevices(r)).map((d) => d.id)).not.toContain('dev-new');
    // Another key asking for the same id while it waits: refused.
    expect((await new KeyClient(r.url, 'dev-new').enroll()).status).toBe(403);

    await cli(['approve', 'dev-new']);
    await waitFor(async () => ((await adminDevices(r)).some((d) => d.id === 'dev-new' && d.lastSeen !== null) ? true : undefined), 60_000, () => waiting.stderr());
    expect((await cli(['list', '--pending'])).stdout).toContain('0 device(s) waiting');
  });

  it('replayed and out-of-order reports are acknowledged but not applied, and counted', async () => {
    const r = await region('order');
    const { token } = (await (await new KeyClient(r.url, 'dev-o').enroll()).json()) as { token: string };
    const report = (version: string, seq?: number) => post(`${r.url}/api/v1/devices/dev-o/report`, { apps: { web: { version, state: 'healthy' } }, ...(seq === undefined ? {} : { seq }) }, token);
    const inventory = async () => ((await (await fetch(`${r.url}/api/v1/devices`, { headers: { authorization: `Bearer ${OPS}` } })).json()) as Array<{ id: string; apps: Record<string, string> }>).find((d) => d.id === 'dev-o')!.apps;

    expect((await report('2.0.0', 5)).status).toBe(200);
    expect(await inventory()).toEqual({ web: '2.0.0' });
    expect((await report('1.0.0', 3)).status).toBe(200); // older, arrived late
    expect((await report('1.0.0', 5)).status).toBe(200); // a replay of the same seq
    expect(await inventory()).toEqual({ web: '2.0.0' });
    expect(await metric(r.url, /^cascade_reports_out_of_order_total\{.*transport="http"/)).toBe(2);
    expect((await report('2.1.0', 6)).status).toBe(200);
    expect(await inventory()).toEqual({ web: '2.1.0' });
    // No seq (an agent before seq): applied as it arrives.
    expect((await report('2.2.0')).status).toBe(200);
    expect(await inventory()).toEqual({ web: '2.2.0' });
    expect((await report('bad', -1)).status).toBe(400);
  });
});
