/**
 * The artifact relay end to end: a real region (git repository on disk, SQLite, HTTP), an origin that
 * counts bytes and can cut connections, real `cascade agent` processes and devices simulated in this
 * process with the agent's own download code. Needs the zstd CLI for deltas (Debian package zstd).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { regionDashboard } from '../../../src/dashboard/serve.js';
import { startRegion, type RunningRegion } from '../../../src/region/compose.js';
import type { ArtifactRelayConfig } from '../../../src/region/artifacts/start-relay.js';
import { commitFiles, makeLocalRepo } from '../../support/git-fixtures.js';
import { CuttingProxy, OriginServer, sha256 } from '../../support/origin-server.js';
import { RelayDevice } from '../../support/relay-device.js';
import { waitFor } from '../../support/region-process.js';
import { findExecutable } from '../../support/requirements.js';

const mosquittoAvailable = async (): Promise<boolean> => findExecutable('mosquitto') !== null;
import { REGION_USER, regionAcl, startAclBroker } from '../../transport/mqtt/mqtt-fixture.js';
import type { RegionMqttOptions } from '../../../src/region/mqtt/region-mqtt.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const TOKEN = 'relay-enrolment-token';
const hasZstd = (() => {
  try {
    execFileSync('zstd', ['--version']);
    return true;
  } catch {
    return false;
  }
})();
if (!hasZstd) {
  if (process.env['CASCADE_STRICT_SKIPS'] === '1') throw new Error('relay e2e needs the zstd CLI (apt-get install zstd)');
  console.log('relay e2e: skipped, needs the zstd CLI (apt-get install zstd)');
}

let root: string;
let origin: OriginServer;
let region: RunningRegion | null;
let repo: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-relay-'));
  origin = await OriginServer.start();
  region = null;
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((done) => child.once('exit', done));
    }
  }
  await region?.close();
  await origin.close();
  await rm(root, { recursive: true, force: true });
});

type Art = { url: string; sha256: string; size: number };

function fleetFiles(version: string, artifacts: Record<string, Art>): Record<string, string> {
  const list = Object.entries(artifacts)
    .map(([v, a]) => `    "${v}":\n      url: ${a.url}\n      sha256: ${a.sha256}\n      size: ${a.size}\n`)
    .join('');
  return {
    'fleet.yaml': 'apiVersion: cascade/v1\nkind: Fleet\nmetadata:\n  name: relay-fleet\nspec:\n  rollout:\n    waves: [100]\n',
    'regions/lab.yaml': 'apiVersion: cascade/v1\nkind: Region\nmetadata:\n  name: lab\n',
    'apps/web.yaml': `apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: web\nspec:\n  runtime:\n    type: exec\n    install: ["cp", "{artifact}", "current-web"]\n  artifacts:\n${list}`,
    'deployments/web.yaml': `apiVersion: cascade/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  app: web\n  version: ${version}\n`,
  };
}

async function start(files: Record<string, string>, relay: ArtifactRelayConfig = {}, mqtt?: RegionMqttOptions): Promise<RunningRegion> {
  repo = (await makeLocalRepo(join(root, 'fleet'), files)).dir;
  region = await startRegion({
    repo,
    branch: 'main',
    region: 'lab',
    host: '127.0.0.1',
    port: 0,
    dataDir: join(root, 'region'),
    intervalMs: 3_600_000,
    enrollmentToken: TOKEN,
    artifactPolicy: { allowOrigins: [`${origin.url}/`] },
    artifactRelay: relay,
    plugins: [regionDashboard],
    ...(mqtt ? { mqtt } : {}),
    log: pino({ level: 'silent' }),
  });
  await region.reconcileNow();
  return region;
}

async function apply(files: Record<string, string>): Promise<void> {
  await commitFiles(repo, files, 'update');
  await region!.reconcileNow();
}

/** A 2% change: a few scattered runs of new bytes. */
function changed(data: Buffer, share = 0.02): Buffer {
  const copy = Buffer.from(data);
  const runs = 8;
  const run = Math.floor((data.length * share) / runs);
  for (let i = 0; i < runs; i++) randomBytes(run).copy(copy, Math.floor(((i + 0.5) * data.length) / runs));
  return copy;
}

function startAgent(id: string, regionUrl = region!.url, extra: string[] = []): { stderr: () => string; dir: string } {
  const dir = join(root, 'agents', id);
  const child = spawn(process.execPath, [join(ROOT, 'bin/cascade.js'), 'agent', '--region-url', regionUrl, '--device-id', id, '--labels', 'kind=real', '--state-dir', dir, '--enrollment-token', TOKEN, '--wait', '5', ...extra], {
    cwd: ROOT,
    env: { ...process.env, CASCADE_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return { stderr: () => stderr, dir };
}

async function syncAll(devices: RelayDevice[], version: string): Promise<void> {
  await waitFor(
    async () => {
      await Promise.all(devices.filter((d) => d.running.get('web')?.version !== version).map((d) => d.sync()));
      return devices.every((d) => d.running.get('web')?.version === version) ? true : undefined;
    },
    60_000,
    () => `devices on ${version}: ${devices.filter((d) => d.running.get('web')?.version === version).length}/${devices.length}; status ${JSON.stringify(region!.status().rollouts)}`,
  );
}

async function enrolled(count: number, prefix: string): Promise<RelayDevice[]> {
  const devices = Array.from({ length: count }, (_, i) => new RelayDevice(region!.url, `${prefix}-${i}`, join(root, 'devices', `${prefix}-${i}`)));
  await Promise.all(devices.map((d) => d.enroll({ kind: 'simulated' }, TOKEN)));
  return devices;
}

describe.skipIf(!hasZstd)('the artifact relay', () => {
  it('fetches each artifact from its origin once for 50 devices (3 real agents), and ships the update as deltas', async () => {
    const v1 = randomBytes(1024 * 1024);
    const v2 = changed(v1);
    const a1 = origin.add('/web-1.0.0.bin', v1);
    const a2 = origin.add('/web-2.0.0.bin', v2);
    await start(fleetFiles('1.0.0', { '1.0.0': a1, '2.0.0': a2 }));

    const agents = ['real-0', 'real-1', 'real-2'].map((id) => startAgent(id));
    const devices = await enrolled(47, 'sim');
    await syncAll(devices, '1.0.0');
    await waitFor(() => (region!.status().devices.converged === 50 ? true : undefined), 60_000, () => `converged: ${JSON.stringify(region!.status().devices)}; agent: ${agents[0]!.stderr().slice(-2000)}`);
    expect(origin.sent('/web-1.0.0.bin')).toBe(v1.length);
    for (const agent of agents) expect(readFileSync(join(agent.dir, 'current-web')).equals(v1)).toBe(true);

    await apply(fleetFiles('2.0.0', { '1.0.0': a1, '2.0.0': a2 }));
    await syncAll(devices, '2.0.0');
    await waitFor(() => (region!.status().devices.converged === 50 && region!.status().rollouts[0]?.version === '2.0.0' ? true : undefined), 60_000, () => `converged: ${JSON.stringify(region!.status())}`);

    // Each artifact crossed from the origin exactly once, in one request.
    expect(origin.sent('/web-1.0.0.bin')).toBe(v1.length);
    expect(origin.sent('/web-2.0.0.bin')).toBe(v2.length);
    expect(origin.requests.filter((r) => r.path === '/web-2.0.0.bin')).toHaveLength(1);
    // The real agents installed exactly the bytes git names.
    for (const agent of agents) {
      expect(readFileSync(join(agent.dir, 'current-web')).equals(v2)).toBe(true);
      expect(agent.stderr()).toContain('"via":"delta"');
    }
    // The simulated devices got deltas, checked against git's sha256.
    const updates = devices.flatMap((d) => d.downloads.filter((x) => x.version === '2.0.0'));
    expect(updates.every((u) => u.via === 'delta')).toBe(true);
    for (const d of devices) expect(sha256(readFileSync(d.running.get('web')!.file))).toBe(a2.sha256);

    const relay = region!.status().artifacts!;
    const entry = relay.artifacts.find((a) => a.version === '2.0.0')!;
    expect(entry).toMatchObject({ state: 'ready', originBytes: v2.length, deltas: 50, downloads: 50 });
    // Bytes to devices for the update: under 10% of 50 full downloads.
    expect(entry.servedBytes).toBeLessThan(0.1 * 50 * v2.length);
    expect(entry.deltaSavedBytes).toBeGreaterThan(0.9 * 50 * v2.length);
    expect(relay.originBytes).toBe(v1.length + v2.length);
    expect(relay.cacheHits).toBeGreaterThanOrEqual(50);

    // Per rollout, for the status API, the hub and the dashboard.
    expect(region!.status().rollouts[0]!.artifact).toMatchObject({ size: v2.length, originBytes: v2.length, deltas: 50, downloads: 50 });
    const dashboard = await (await fetch(`${region!.url}/api/v1/dashboard`)).text();
    expect(dashboard).toContain(`"deltaSavedBytes":${entry.deltaSavedBytes}`);

    const metrics = await (await fetch(`${region!.url}/metrics`)).text();
    expect(metrics).toMatch(/cascade_relay_origin_bytes_total\{region="lab"\} (\d+)/);
    expect(Number(/cascade_relay_origin_bytes_total\{region="lab"\} (\d+)/.exec(metrics)![1])).toBe(v1.length + v2.length);
    expect(metrics).toContain('cascade_relay_delta_saved_bytes_total');
    expect(metrics).toContain('cascade_relay_cache_hits_total');
  }, 180_000);

  it('fetches the version devices already run as the base of a delta, once, and updates them with deltas', async () => {
    const v1 = randomBytes(512 * 1024);
    const v2 = changed(v1);
    const a1 = origin.add('/web-1.0.0.bin', v1);
    const a2 = origin.add('/web-2.0.0.bin', v2);
    await start(fleetFiles('1.0.0', { '1.0.0': a1, '2.0.0': a2 }));
    // Installed at the factory: the region never relayed version 1.
    const factory = join(root, 'factory-web-1.0.0');
    writeFileSync(factory, v1);
    const devices = Array.from({ length: 5 }, (_, i) => new RelayDevice(region!.url, `factory-${i}`, join(root, 'devices', `factory-${i}`)));
    for (const d of devices) d.running.set('web', { version: '1.0.0', file: factory });
    await Promise.all(devices.map((d) => d.enroll({}, TOKEN)));
    await region!.reconcileNow();
    expect(origin.requests).toEqual([]); // nothing to hand out, nothing fetched

    await apply(fleetFiles('2.0.0', { '1.0.0': a1, '2.0.0': a2 }));
    await syncAll(devices, '2.0.0');
    expect(devices.map((d) => d.downloads.at(-1)!.via)).toEqual(['delta', 'delta', 'delta', 'delta', 'delta']);
    expect(origin.sent('/web-1.0.0.bin')).toBe(v1.length);
    expect(origin.sent('/web-2.0.0.bin')).toBe(v2.length);
    for (const d of devices) expect(readFileSync(d.running.get('web')!.file).equals(v2)).toBe(true);
  }, 60_000);

  it('resumes a download cut in the middle with a Range request, and still checks the whole file', async () => {
    const v1 = randomBytes(2 * 1024 * 1024);
    const a1 = origin.add('/web-1.0.0.bin', v1);
    await start(fleetFiles('1.0.0', { '1.0.0': a1 }));
    const proxy = await CuttingProxy.start(region!.url);
    try {
      const device = new RelayDevice(proxy.url, 'flaky-1', join(root, 'flaky-1'));
      await device.enroll({}, TOKEN);
      await region!.reconcileNow();
      await waitFor(async () => ((await device.desired())['web'] ? true : undefined), 20_000, () => `${JSON.stringify(region!.status().rollouts)} ${JSON.stringify(proxy.heads.map((h) => h.line))}`);
      proxy.cut = { match: `/api/v1/artifacts/${a1.sha256}`, bytes: 700_000 };
      await device.sync().catch((err: unknown) => {
        throw new Error(`${String(err)}; proxy saw ${JSON.stringify(proxy.heads.map((h) => h.line))}`);
      });

      const ranges = proxy.rangeRequests(`/api/v1/artifacts/${a1.sha256}`);
      expect(ranges).toHaveLength(1);
      const from = Number(/^bytes=(\d+)-$/.exec(ranges[0]!)![1]);
      expect(from).toBeGreaterThan(0);
      expect(from).toBeLessThan(700_000);
      expect(device.downloads[0]).toMatchObject({ via: 'full', resumed: 1 });
      // Nothing was sent twice: the resumed request asked only for the rest.
      expect(device.downloads[0]!.bytesReceived).toBe(v1.length);
      expect(readFileSync(device.running.get('web')!.file).equals(v1)).toBe(true);
      expect(existsSync(`${device.running.get('web')!.file}.partial`)).toBe(false);
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it('a real agent whose download is cut resumes it with a Range request', async () => {
    const v1 = randomBytes(3 * 1024 * 1024);
    const a1 = origin.add('/web-1.0.0.bin', v1);
    await start(fleetFiles('1.0.0', { '1.0.0': a1 }));
    const proxy = await CuttingProxy.start(region!.url);
    try {
      proxy.cut = { match: `/api/v1/artifacts/${a1.sha256}`, bytes: 1_000_000 };
      const agent = startAgent('real-flaky', proxy.url);
      await waitFor(() => (region!.status().devices.converged === 1 ? true : undefined), 60_000, () => `converged: ${JSON.stringify(region!.status())}; agent: ${agent.stderr().slice(-3000)}`);
      expect(readFileSync(join(agent.dir, 'current-web')).equals(v1)).toBe(true);
      const ranges = proxy.rangeRequests(`/api/v1/artifacts/${a1.sha256}`);
      expect(ranges).toHaveLength(1);
      expect(Number(/^bytes=(\d+)-$/.exec(ranges[0]!)![1])).toBeGreaterThan(0);
      expect(agent.stderr()).toContain('resuming');
      // Origin once; the region sent less than two whole files (what sat in socket buffers at the cut, plus the rest).
      expect(origin.sent('/web-1.0.0.bin')).toBe(v1.length);
      expect(region!.status().artifacts!.servedBytes).toBeLessThan(2 * v1.length);
    } finally {
      await proxy.close();
    }
  }, 90_000);

  it('never installs a tampered cache file: changed on disk it is hashed again and replaced, changed behind its mtime the device refuses it', async () => {
    const v1 = randomBytes(512 * 1024);
    const a1 = origin.add('/web-1.0.0.bin', v1);
    await start(fleetFiles('1.0.0', { '1.0.0': a1 }));
    const [first, second] = await enrolled(2, 'tamper');
    await region!.reconcileNow();
    const cached = join(root, 'region', 'artifacts', 'sha256', a1.sha256);
    await waitFor(() => (existsSync(cached) ? true : undefined), 30_000, () => 'artifact cached');
    await waitFor(async () => ((await first!.desired())['web'] ? true : undefined), 30_000, () => JSON.stringify(region!.status().rollouts));

    // 1. Changed and its mtime kept: served once, refused by the device's sha256 check, then dropped by the region.
    const before = statSync(cached);
    const evil = Buffer.from(v1);
    evil.write('EVIL', 1000);
    writeFileSync(cached, evil);
    utimesSync(cached, before.atimeMs / 1000, before.mtimeMs / 1000);
    const refused = await first!.sync().then(() => null, (err: unknown) => err);
    expect(refused, String(refused)).toMatchObject({ code: 'artifact-checksum-mismatch' });
    expect(existsSync(join(first!.dir, 'web-1.0.0'))).toBe(false);
    await waitFor(() => (!existsSync(cached) || readFileSync(cached).equals(v1) ? true : undefined), 10_000, () => 'tampered file removed');
    // The next attempt gets the real bytes, fetched again from the origin.
    await first!.sync();
    expect(readFileSync(join(first!.dir, 'web-1.0.0')).equals(v1)).toBe(true);
    expect(origin.requests.filter((r) => r.path === '/web-1.0.0.bin')).toHaveLength(2);

    // 2. Changed with a new mtime: the region hashes it before serving and fetches it again.
    writeFileSync(cached, evil);
    await second!.sync();
    expect(readFileSync(join(second!.dir, 'web-1.0.0')).equals(v1)).toBe(true);
    expect(origin.requests.filter((r) => r.path === '/web-1.0.0.bin')).toHaveLength(3);
  }, 60_000);

  it('an artifact failing verification is never served; its rollout waits and says why', async () => {
    const good = randomBytes(64 * 1024);
    const a1 = origin.add('/web-1.0.0.bin', good);
    origin.files.set('/web-1.0.0.bin', randomBytes(64 * 1024)); // the origin now serves other bytes
    await start(fleetFiles('1.0.0', { '1.0.0': a1 }));
    const [device] = await enrolled(1, 'wait');
    await region!.reconcileNow();
    const rollout = await waitFor(
      async () => {
        await region!.reconcileNow();
        const r = region!.status().rollouts[0];
        return r?.waitingForArtifact?.includes('could not get') ? r : undefined;
      },
      30_000,
      () => JSON.stringify(region!.status().rollouts),
    );
    expect(rollout.message).toMatch(/waiting for the artifact: the region could not get artifact web 1\.0\.0/);
    expect(region!.status().artifacts!.artifacts[0]).toMatchObject({ state: 'failed' });
    expect(await device!.desired()).toEqual({});
    expect(existsSync(join(root, 'region', 'artifacts', 'sha256', a1.sha256))).toBe(false);
    // Asking for it directly does not help either.
    const answer = await fetch(`${region!.url}/api/v1/artifacts/${a1.sha256}`, { headers: { authorization: `Bearer ${device!.client.token}` } });
    expect(answer.status).toBe(404);
  }, 60_000);

  it('falls back to the whole file when the delta cannot be used (zstd missing, the current file changed)', async () => {
    const v1 = randomBytes(256 * 1024);
    const v2 = changed(v1);
    const a1 = origin.add('/web-1.0.0.bin', v1);
    const a2 = origin.add('/web-2.0.0.bin', v2);
    await start(fleetFiles('1.0.0', { '1.0.0': a1, '2.0.0': a2 }));
    const noZstd = new RelayDevice(region!.url, 'no-zstd', join(root, 'no-zstd'), { zstd: '/nonexistent/zstd' });
    const edited = new RelayDevice(region!.url, 'edited', join(root, 'edited'));
    const fine = new RelayDevice(region!.url, 'fine', join(root, 'fine'));
    for (const d of [noZstd, edited, fine]) await d.enroll({}, TOKEN);
    await syncAll([noZstd, edited, fine], '1.0.0');
    writeFileSync(edited.running.get('web')!.file, changed(v1, 0.01));
    await apply(fleetFiles('2.0.0', { '1.0.0': a1, '2.0.0': a2 }));
    await syncAll([noZstd, edited, fine], '2.0.0');
    expect(fine.downloads.at(-1)).toMatchObject({ via: 'delta' });
    expect(fine.downloads.at(-1)!.bytesReceived).toBeLessThan(0.1 * v2.length);
    expect(noZstd.downloads.at(-1)).toMatchObject({ via: 'full' });
    expect(edited.downloads.at(-1)).toMatchObject({ via: 'full' });
    for (const d of [noZstd, edited, fine]) expect(readFileSync(d.running.get('web')!.file).equals(v2)).toBe(true);
  }, 60_000);

  it('fetches from an origin that needs credentials, which devices never see', async () => {
    origin.requiredToken = 'origin-secret-token';
    const v1 = randomBytes(32 * 1024);
    const a1 = origin.add('/web-1.0.0.bin', v1);
    const credentials = join(root, 'credentials.json');
    writeFileSync(credentials, JSON.stringify({ origins: [{ prefix: `${origin.url}/`, bearer: 'origin-secret-token' }] }));
    await start(fleetFiles('1.0.0', { '1.0.0': a1 }), { credentialsFile: credentials });
    const [device] = await enrolled(1, 'cred');
    await syncAll([device!], '1.0.0');
    expect(readFileSync(device!.running.get('web')!.file).equals(v1)).toBe(true);
    expect(JSON.stringify(await device!.desired())).not.toContain('origin-secret-token');
    expect(origin.requests.every((r) => r.authorization === 'Bearer origin-secret-token')).toBe(true);
  }, 60_000);

  it('refuses devices without a token, and artifacts a device was not handed', async () => {
    const a1 = origin.add('/web-1.0.0.bin', randomBytes(1024));
    await start(fleetFiles('1.0.0', { '1.0.0': a1 }));
    const [device] = await enrolled(1, 'auth');
    await syncAll([device!], '1.0.0');
    const url = `${region!.url}/api/v1/artifacts/${a1.sha256}`;
    expect((await fetch(url)).status).toBe(401);
    expect((await fetch(url, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    const other = `${region!.url}/api/v1/artifacts/${'a'.repeat(64)}`;
    expect((await fetch(other, { headers: { authorization: `Bearer ${device!.client.token}` } })).status).toBe(404);
    expect((await fetch(`${region!.url}/api/v1/artifacts/..%2F..%2Fetc%2Fpasswd`, { headers: { authorization: `Bearer ${device!.client.token}` } })).status).toBe(400);
    const ranged = await fetch(url, { headers: { authorization: `Bearer ${device!.client.token}`, range: 'bytes=1000-' } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe('bytes 1000-1023/1024');
    expect((await ranged.arrayBuffer()).byteLength).toBe(24);
    const past = await fetch(url, { headers: { authorization: `Bearer ${device!.client.token}`, range: 'bytes=5000-' } });
    expect(past.status).toBe(416);
  }, 60_000);

  it('evicts the least recently used artifact beyond --artifact-cache-size, never what the running rollout needs', async () => {
    const size = 256 * 1024;
    const v1 = randomBytes(size);
    const v2 = changed(v1);
    const v3 = changed(v2);
    const arts = { '1.0.0': origin.add('/web-1.0.0.bin', v1), '2.0.0': origin.add('/web-2.0.0.bin', v2), '3.0.0': origin.add('/web-3.0.0.bin', v3) };
    await start(fleetFiles('1.0.0', arts), { cacheBytes: Math.floor(2.5 * size) });
    const devices = await enrolled(3, 'lru');
    await syncAll(devices, '1.0.0');
    await apply(fleetFiles('2.0.0', arts));
    await syncAll(devices, '2.0.0');
    await apply(fleetFiles('3.0.0', arts));
    await syncAll(devices, '3.0.0');
    // Version 3 (the rollout's) and 2 (the base of its delta) stay; version 1 made room.
    const cached = (sha: string) => existsSync(join(root, 'region', 'artifacts', 'sha256', sha));
    expect([cached(arts['1.0.0'].sha256), cached(arts['2.0.0'].sha256), cached(arts['3.0.0'].sha256)]).toEqual([false, true, true]);
    expect(devices.map((d) => d.downloads.at(-1)!.via)).toEqual(['delta', 'delta', 'delta']);
    expect(region!.status().artifacts!.cacheBytes).toBeLessThanOrEqual(2.5 * size);
  }, 60_000);

  it('gives a download slot back when a device hangs up, whenever it does', async () => {
    const v1 = randomBytes(4 * 1024 * 1024);
    const a1 = origin.add('/web-1.0.0.bin', v1);
    await start(fleetFiles('1.0.0', { '1.0.0': a1 }), { concurrency: 2, rate: 1024 * 1024 });
    const [device, other] = await enrolled(2, 'hangup');
    await region!.reconcileNow();
    await waitFor(async () => ((await device!.desired())['web'] ? true : undefined), 30_000, () => JSON.stringify(region!.status().rollouts));
    const url = `${region!.url}/api/v1/artifacts/${a1.sha256}`;
    // Ten devices that go away: some at once, some after the first bytes.
    for (let i = 0; i < 10; i++) {
      const gone = new AbortController();
      const answer = fetch(url, { headers: { authorization: `Bearer ${device!.client.token}` }, signal: gone.signal });
      if (i % 2 === 0) gone.abort();
      else {
        const response = await answer;
        await response.body!.getReader().read();
        gone.abort();
      }
      await answer.catch(() => undefined);
    }
    // Both slots are free again: a whole (throttled) download still completes.
    await other!.sync();
    expect(readFileSync(other!.running.get('web')!.file).equals(v1)).toBe(true);
  }, 60_000);

  it('keeps all devices together under --relay-rate (within 10%)', async () => {
    const rate = 4 * 1024 * 1024;
    const v1 = randomBytes(2 * 1024 * 1024);
    const a1 = origin.add('/web-1.0.0.bin', v1);
    await start(fleetFiles('1.0.0', { '1.0.0': a1 }), { rate, concurrency: 8 });
    const devices = await enrolled(4, 'rate');
    await region!.reconcileNow();
    await waitFor(async () => ((await devices[0]!.desired())['web'] ? true : undefined), 30_000, () => JSON.stringify(region!.status().rollouts));
    const started = performance.now();
    await syncAll(devices, '1.0.0');
    const seconds = (performance.now() - started) / 1000;
    const bytes = 4 * v1.length;
    // The bucket's promise: at most rate x time + its burst (rate / 20).
    expect(bytes).toBeLessThanOrEqual(rate * seconds * 1.1);
    // And it is a limit, not a stall.
    expect(bytes / seconds).toBeGreaterThan(rate * 0.25);
  }, 60_000);

  it('relays to an agent that takes its desired state over MQTT', async (context) => {
    if (!(await mosquittoAvailable())) {
      if (process.env['CASCADE_STRICT_SKIPS'] === '1') throw new Error('needs mosquitto');
      console.log('relay over MQTT: skipped, needs mosquitto (apt-get install mosquitto)');
      context.skip();
    }
    const broker = await startAclBroker({ acl: regionAcl('lab') });
    try {
      const v1 = randomBytes(200_000);
      const a1 = origin.add('/web-1.0.0.bin', v1);
      await start(fleetFiles('1.0.0', { '1.0.0': a1 }), {}, { url: broker.url, ...REGION_USER, passwordFile: broker.passwordFile, brokerPidFile: broker.pidFile });
      const agent = startAgent('real-mqtt', region!.url, ['--mqtt-url', broker.url]);
      await waitFor(() => (region!.status().devices.converged === 1 ? true : undefined), 60_000, () => `converged: ${JSON.stringify(region!.status())}; agent: ${agent.stderr().slice(-3000)}`);
      expect(readFileSync(join(agent.dir, 'current-web')).equals(v1)).toBe(true);
      expect(agent.stderr()).toContain('artifact received from the region');
      expect(region!.status().artifacts!.servedBytes).toBe(v1.length);
    } finally {
      await broker.stop();
    }
  }, 90_000);
});
