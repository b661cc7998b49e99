import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppSpec } from '../../../src/desired/model.js';
import { freePort } from '../../support/free-port.js';
import { ENROLLMENT_TOKEN, RegionFixture, until } from '../region-fixture.js';
import { cleanupContainers, containerTestProblem, podman, podmanEnvironment, pushImage, skipUnless, startLyingRegistry, startPrivateRegistry, startRegistry, type Registry } from './oci-fixture.js';

/**
 * A real `cascade agent` process runs container apps on podman (with runc), pulled by digest from a
 * real registry (Debian's docker-registry) on a free port, handed out by a real region (device API
 * and SQLite store): install, upgrade, a failed health check that brings the old container back, a
 * revert with the registry down (the previous image stays), drift put back, adoption after a restart,
 * what the Region does not allow, a registry serving another digest, and removal.
 */

const FILE = 'test/agent/container/container-agent.test.ts';
const ROOT = resolve(import.meta.dirname, '../../..');
const scratch = mkdtempSync(join(tmpdir(), 'cascade-ctr-'));
const skip = skipUnless(await containerTestProblem(scratch), FILE);
if (skip) rmSync(scratch, { recursive: true, force: true });

const DEVICE = `ctest-${randomBytes(4).toString('hex')}`;
const LABEL = `io.cascade.device=${DEVICE}`;
let env: NodeJS.ProcessEnv;
let registry: Registry;
let liar: { host: string; close(): Promise<void> } | undefined;
let privateRegistry: Awaited<ReturnType<typeof startPrivateRegistry>> | undefined;
const authFile = join(scratch, 'registry-auth.json');
let region: RegionFixture;
let appPort: number;
let repository: string;
const digests: Record<string, string> = {};
let agent: { child: ChildProcess; stderr: () => string; exited: Promise<number | null> } | null = null;
const hostDir = join(scratch, 'host-data');

function startAgent(stateDir = join(scratch, 'agent')): void {
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'bin/cascade.js'), 'agent',
      '--region-url', region.url,
      '--device-id', DEVICE,
      '--state-dir', stateDir,
      '--enrollment-token', ENROLLMENT_TOKEN,
      '--wait', '2',
      '--container-engine', 'podman',
      '--container-prefix', DEVICE,
      '--drift-check', '500ms',
      '--health-interval', '300ms',
      '--registry-auth', authFile,
    ],
    { cwd: ROOT, env: { ...env, CASCADE_LOG_FORMAT: 'json' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  agent = { child, stderr: () => stderr, exited: new Promise((done) => child.once('exit', (code) => done(code))) };
}

async function stopAgent(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  const running = agent;
  agent = null;
  if (!running || running.child.exitCode !== null || running.child.signalCode !== null) return;
  running.child.kill(signal);
  await running.exited;
}

/** The web App as git would say it; `extra` overrides runtime fields. */
function webApp(extra: Record<string, unknown> = {}, artifacts: Record<string, { image: string; digest: string }> = {}): AppSpec {
  return {
    runtime: {
      type: 'container',
      image: repository,
      // httpd as PID 1 would ignore SIGTERM; the shell ends on it, as a real app would.
      command: ['/bin/busybox', 'sh', '-c'],
      args: [`trap 'exit 0' TERM; /bin/busybox httpd -f -p 127.0.0.1:${appPort} -h /www & wait`],
      stopGracePeriod: '5s',
      env: { GREETING: 'hello; $(touch /tmp/pwned) `id`', EMPTY: '' },
      network: 'host',
      restart: 'always',
      resources: { memory: '64Mi', cpus: 0.5 },
      volumes: [
        { name: 'data', target: '/data' },
        { hostPath: hostDir, target: '/host', readOnly: true },
      ],
      regionPolicy: { hostPaths: [hostDir] },
      ...extra,
    } as AppSpec['runtime'],
    artifacts: {
      '1.0.0': { image: `${repository}:1.0.0`, digest: digests['1']! },
      '2.0.0': { image: `${repository}:2.0.0`, digest: digests['2']! },
      '3.0.0': { image: `${repository}:3.0.0`, digest: digests['3']! },
      ...artifacts,
    },
    healthCheck: { http: `http://127.0.0.1:${appPort}/healthz`, timeout: '2s', retries: 2 },
  };
}

function handOut(version: string, app: AppSpec = webApp()): void {
  region.handOut([DEVICE], { web: { version, deployment: 'web-all' } }, { web: app });
}

const report = () => region.store.getDevice(DEVICE)?.apps['web'];

async function waitForReport(version: string | null, state: string, what: string, timeoutMs = 60_000): Promise<void> {
  await until(() => report()?.version === version && report()?.state === state, timeoutMs, `${what} (report: ${JSON.stringify(report())}; agent: ${agent?.stderr().slice(-3000)})`);
}

interface Inspected {
  Id: string;
  Name: string;
  State: { Running: boolean; Status: string; StartedAt: string };
  Config: { Labels: Record<string, string>; Env: string[] };
  Mounts: Array<{ Type: string; Name?: string; Source: string; Destination: string; RW: boolean }>;
  HostConfig: { Memory: number; NanoCpus: number; RestartPolicy: { Name: string } };
}

async function containers(): Promise<Inspected[]> {
  const ids = (await podman(['ps', '-aq', '--filter', `label=${LABEL}`], env)).split('\n').filter(Boolean);
  const found: Inspected[] = [];
  for (const id of ids) {
    // The agent may remove a container between the two commands.
    const text = await podman(['container', 'inspect', id], env).catch(() => null);
    if (text) found.push(...(JSON.parse(text) as Inspected[]));
  }
  return found;
}

async function running(): Promise<Inspected[]> {
  return (await containers()).filter((c) => c.State.Running);
}

/** Waits until the device's containers are exactly `versions` (the old one is removed after the healthy report). */
async function waitForContainers(versions: string[]): Promise<Inspected[]> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const all = await containers();
    if (JSON.stringify(all.map((c) => c.Config.Labels['io.cascade.version']).sort()) === JSON.stringify([...versions].sort())) return all;
    if (Date.now() > deadline) throw new Error(`containers: ${all.map((c) => c.Name).join(', ')}; expected versions ${versions.join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * `podman images` while the agent prunes: podman lists image ids, then reads each, and one removed in
 * between fails the whole listing with "image not known". Such a listing is taken again.
 */
async function listImages(): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await podman(['images', '--no-trunc', '--digests', '--format', '{{.Repository}} {{.Digest}}'], env);
    } catch (err) {
      if (attempt >= 10 || !(err as Error).message.includes('image not known')) throw err;
    }
  }
}

async function served(): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${appPort}/version`);
  return (await response.text()).trim();
}

async function localDigests(): Promise<string[]> {
  const out = await listImages();
  return out
    .split('\n')
    .filter((line) => line.startsWith(`${repository} `))
    .map((line) => line.split(' ')[1]!)
    .sort();
}

describe.skipIf(skip)('cascade agent running container apps on podman', () => {
  beforeAll(async () => {
    registry = await startRegistry(join(scratch, 'registry'));
    env = await podmanEnvironment(join(scratch, 'podman'), [registry.host]);
    repository = `${registry.host}/${DEVICE}/web`;
    appPort = await freePort();
    mkdirSync(hostDir, { recursive: true });
    writeFileSync(join(hostDir, 'note'), 'from the host');
    for (const version of ['1', '2', '3', '4', '5']) {
      const files: Record<string, string> = { 'www/version': `${version}.0.0\n` };
      // Version 3 has no /healthz: its health check fails.
      if (version !== '3') files['www/healthz'] = 'ok\n';
      // Versions 4 and 5 carry their own HEALTHCHECK: 4's looks for a file it lacks.
      const healthcheck = version === '4' ? ['/bin/busybox', 'test', '-f', '/www/ready'] : version === '5' ? ['/bin/busybox', 'test', '-f', '/www/healthz'] : undefined;
      digests[version] = await pushImage(env, join(scratch, `image-${version}`), `${repository}:${version}.0.0`, files, [], healthcheck);
    }
    // In front of the same registry: asked for 2.0.0's manifest, it serves 3.0.0's.
    liar = await startLyingRegistry(registry.host, digests['2']!, digests['3']!);
    // A private registry: the same images behind basic auth; the device's credentials are in a file.
    privateRegistry = await startPrivateRegistry(registry.host, 'device', 'pa:ss w0rd');
    writeFileSync(authFile, JSON.stringify({ auths: { [privateRegistry.host]: { auth: Buffer.from('device:pa:ss w0rd').toString('base64') } } }), { mode: 0o600 });
    env = await podmanEnvironment(join(scratch, 'podman'), [registry.host, liar.host, privateRegistry.host]);
    region = await RegionFixture.start();
    startAgent();
    await until(() => region.store.getDevice(DEVICE) !== null, 30_000, `enrolment (agent: ${agent?.stderr()})`);
  }, 180_000);

  afterAll(async () => {
    await stopAgent();
    if (env) await cleanupContainers(env, LABEL, `${registry?.host}/${DEVICE}/`);
    await registry?.stop();
    await liar?.close();
    await privateRegistry?.close();
    await region?.close();
    rmSync(scratch, { recursive: true, force: true });
  }, 120_000);

  it('installs by digest with the run spec, labels, env, volumes and limits', async () => {
    handOut('1.0.0');
    await waitForReport('1.0.0', 'healthy', 'install of 1.0.0');
    const [container, ...others] = await running();
    expect(others).toEqual([]);
    expect(container!.Config.Labels).toMatchObject({
      'io.cascade.app': 'web',
      'io.cascade.version': '1.0.0',
      'io.cascade.device': DEVICE,
      'io.cascade.digest': digests['1'],
      'io.cascade.revision': 'rev1',
    });
    expect(container!.Config.Env).toContain('GREETING=hello; $(touch /tmp/pwned) `id`');
    expect(container!.Config.Env).toContain('EMPTY=');
    expect(container!.HostConfig.Memory).toBe(64 * 1024 * 1024);
    expect(container!.HostConfig.NanoCpus).toBe(500_000_000);
    expect(container!.HostConfig.RestartPolicy.Name).toBe('always');
    const data = container!.Mounts.find((m) => m.Destination === '/data');
    expect(data).toMatchObject({ Type: 'volume', Name: `${DEVICE}-web-data` });
    expect(container!.Mounts.find((m) => m.Destination === '/host')).toMatchObject({ Source: hostDir, RW: false });
    expect(await podman(['exec', container!.Name, '/bin/busybox', 'cat', '/host/note'], env)).toBe('from the host');
    expect(await served()).toBe('1.0.0');
    // Pulled by digest: the only local image of the repository is that digest.
    expect(await localDigests()).toEqual([digests['1']]);
  });

  it('upgrades as a swap and keeps the previous image', async () => {
    handOut('2.0.0');
    await waitForReport('2.0.0', 'healthy', 'upgrade to 2.0.0');
    const all = await waitForContainers(['2.0.0']);
    expect(all[0]!.State.Running).toBe(true);
    expect(await served()).toBe('2.0.0');
    expect(await localDigests()).toEqual([digests['1'], digests['2']].sort());
  });

  it('brings the old container back when the new one fails its health check, with the reason', async () => {
    const [before] = await running();
    handOut('3.0.0');
    await waitForReport('2.0.0', 'failed', 'failed upgrade to 3.0.0');
    expect(report()!.message).toContain('version 3.0.0');
    expect(report()!.message).toContain(`GET http://127.0.0.1:${appPort}/healthz answered 404`);
    expect(report()!.message).toContain('running 2.0.0 again');
    const all = await containers();
    // The same container as before, started again; the failed one is gone.
    expect(all.map((c) => [c.Id, c.State.Running])).toEqual([[before!.Id, true]]);
    expect(await served()).toBe('2.0.0');
  });

  it('reverts to the previous version without the registry (its image was kept) and prunes the rest', async () => {
    await registry.stop();
    try {
      handOut('1.0.0');
      await waitForReport('1.0.0', 'healthy', 'revert to 1.0.0 with the registry down');
    } finally {
      await registry.start();
    }
    expect(await served()).toBe('1.0.0');
    await waitForContainers(['1.0.0']);
    // One previous version kept (2.0.0); the failed 3.0.0 is pruned (after the healthy report).
    const expected = [digests['1'], digests['2']].sort();
    const deadline = Date.now() + 30_000;
    while (JSON.stringify(await localDigests()) !== JSON.stringify(expected) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await localDigests()).toEqual(expected);
  });

  it('puts back a container removed or stopped by hand, and says so', async () => {
    const [before] = await running();
    await podman(['rm', '--force', '--time', '0', before!.Name], env);
    await until(() => (report()?.message ?? '').includes('was removed'), 30_000, `drift report (${JSON.stringify(report())})`);
    expect(report()).toMatchObject({ version: '1.0.0', state: 'healthy' });
    const [again] = await running();
    expect(again!.Name).toBe(before!.Name);
    expect(again!.Id).not.toBe(before!.Id);
    expect(await served()).toBe('1.0.0');

    await podman(['stop', '--time', '0', again!.Name], env);
    await until(() => (report()?.message ?? '').includes('is exited') || (report()?.message ?? '').includes('is stopped'), 30_000, `drift report after stop (${JSON.stringify(report())})`);
    await until(() => report()?.state === 'healthy', 30_000, 'healthy after stop');
    const [restarted] = await running();
    expect(restarted!.Id).toBe(again!.Id);
  });

  it('adopts the running container after a restart, even with its state lost', async () => {
    const [before] = await running();
    await stopAgent('SIGKILL');
    let reportsBefore = region.reportsOf(DEVICE);
    startAgent();
    await until(() => region.reportsOf(DEVICE) > reportsBefore && report()?.state === 'healthy', 60_000, `restart (agent: ${agent?.stderr().slice(-2000)})`);
    // Wiped state: it enrols again and finds its container instead of recreating it.
    await stopAgent('SIGKILL');
    reportsBefore = region.reportsOf(DEVICE);
    startAgent(join(scratch, 'agent-fresh'));
    await until(() => agent!.stderr().includes('adopting the running container'), 60_000, `adoption (agent: ${agent?.stderr().slice(-2000)})`);
    await until(() => region.reportsOf(DEVICE) > reportsBefore + 1 && report()?.version === '1.0.0' && report()?.state === 'healthy', 60_000, `healthy after adoption (${JSON.stringify(report())})`);
    const [after] = await running();
    expect(after!.Id).toBe(before!.Id);
    expect(after!.State.StartedAt).toBe(before!.State.StartedAt);
  });

  it('refuses what the Region does not allow and keeps the running version', async () => {
    const [before] = await running();
    handOut('2.0.0', webApp({ privileged: true, volumes: [{ hostPath: '/etc', target: '/etc-host' }] }));
    await waitForReport('1.0.0', 'failed', 'refusal');
    expect(report()!.message).toContain('runtime.privileged');
    expect(report()!.message).toContain('host path /etc is outside');
    expect(report()!.message).toContain('1.0.0 keeps running');
    const [after] = await running();
    expect(after!.Id).toBe(before!.Id);
  });

  it("reports the engine's words when the new container cannot start, and starts the old one again", async () => {
    const [before] = await running();
    handOut('2.0.3', webApp({ devices: [{ path: '/dev/cascade-test-missing' }] }, { '2.0.3': { image: `${repository}:2.0.3`, digest: digests['2']! } }));
    await until(() => (report()?.message ?? '').includes('version 2.0.3'), 60_000, `start failure (${JSON.stringify(report())})`);
    expect(report()).toMatchObject({ version: '1.0.0', state: 'failed' });
    expect(report()!.message).toMatch(/podman run failed: .*\/dev\/cascade-test-missing/);
    expect(report()!.message).toContain('running 1.0.0 again');
    const [after] = await running();
    expect(after!.Id).toBe(before!.Id);
    expect(await served()).toBe('1.0.0');
  });

  it('refuses an image whose registry serves another digest', async () => {
    const lyingRepository = `${liar!.host}/${DEVICE}/web`;
    // 2.0.0's image is on the device already (kept for rollback): a new version name makes it pull.
    await podman(['rmi', '--force', `${repository}@${digests['2']}`], env);
    handOut('2.0.1', webApp({ image: lyingRepository }, { '2.0.1': { image: `${lyingRepository}:2.0.1`, digest: digests['2']! } }));
    await until(() => (report()?.message ?? '').includes('version 2.0.1'), 60_000, `digest refusal (${JSON.stringify(report())})`);
    expect(report()!.message).toContain('did not serve');
    expect(report()!.message).toContain(digests['2']);
    expect(report()!.message).toContain('1.0.0 keeps running');
    expect(await served()).toBe('1.0.0');
    const pulled = await podman(['images', '--format', '{{.Repository}}'], env);
    expect(pulled).not.toContain(lyingRepository);
  });

  it("lets the image's own HEALTHCHECK decide when the App has no health check", async () => {
    const imageChecked = (version: string): AppSpec => {
      const app = webApp({}, { [version]: { image: `${repository}:${version}`, digest: digests[version[0]!]! } });
      delete app.healthCheck;
      return app;
    };
    handOut('4.0.0', imageChecked('4.0.0'));
    await until(() => (report()?.message ?? '').includes('version 4.0.0'), 60_000, `HEALTHCHECK failure (${JSON.stringify(report())})`);
    expect(report()).toMatchObject({ version: '1.0.0', state: 'failed' });
    expect(report()!.message).toContain("the image's HEALTHCHECK failed");
    expect(report()!.message).toContain('running 1.0.0 again');
    expect(await served()).toBe('1.0.0');

    handOut('5.0.0', imageChecked('5.0.0'));
    await waitForReport('5.0.0', 'healthy', "upgrade checked by the image's HEALTHCHECK");
    expect(await served()).toBe('5.0.0');
  });

  it('pulls from a private registry with the credentials file on the device', async () => {
    const privateRepository = `${privateRegistry!.host}/${DEVICE}/web`;
    // Without credentials the private registry refuses (checked with podman, not the agent).
    await expect(podman(['pull', `${privateRepository}@${digests['2']}`], env)).rejects.toThrow(/unauthorized|authentication required|401/i);
    const refusedBefore = privateRegistry!.refused();
    handOut('2.0.2', webApp({ image: privateRepository }, { '2.0.2': { image: `${privateRepository}:2.0.2`, digest: digests['2']! } }));
    await waitForReport('2.0.2', 'healthy', 'install from the private registry');
    expect(privateRegistry!.allowed()).toBeGreaterThan(0);
    expect(await served()).toBe('2.0.0');
    // podman asks without credentials first and answers the challenge; it never gets an image without them.
    expect(privateRegistry!.refused()).toBeGreaterThanOrEqual(refusedBefore);
  });

  it('removes the app when the region no longer asks for it', async () => {
    region.handOut([DEVICE], {}, {});
    await until(() => region.store.getDevice(DEVICE)?.apps['web'] === undefined, 60_000, `removal (report: ${JSON.stringify(region.store.getDevice(DEVICE)?.apps)})`);
    expect(await containers()).toEqual([]);
    expect(await localDigests()).toEqual([]);
  });
});
