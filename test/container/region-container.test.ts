import { randomBytes } from 'node:crypto';
import { chown, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import type { RegionStatus } from '../../src/reconciler/region-status.js';
import { fetchInventory } from '../../src/agent/http/region-client.js';
import { startSimulation, type Simulation } from '../../src/simulate/simulation.js';
import { commitAndPush, makeFleetRemote, type FileChanges, type FleetRemote } from '../support/git-fixtures.js';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http-server.js';
import { waitFor } from '../support/region-process.js';
import { requireTool } from '../support/requirements.js';
import { buildCascadeImage, containerEnvironmentProblem, ROOT } from './cascade-image.js';
import { containerLogs, podman, PodmanError, removeContainer, RUNTIME_FLAGS } from './podman.js';

/**
 * The image built from the project's Dockerfile runs a real region: it pulls the template fleet
 * from a git smart HTTP server on the host, devices simulated in this process converge on a
 * commit, and a new container on the same state volume keeps serving the last good revision
 * while the git host is down. Skipped, with the reason printed, where podman cannot run.
 */

const problem = await requireTool({
  name: 'podman that can run containers here, as root',
  install: 'apt-get install -y podman runc busybox-static; .ci/run does',
  check: async () => (await containerEnvironmentProblem()) ?? true,
});

const ENROLLMENT_TOKEN = 'container-test-enrolment-token';
const GIT_TOKEN = 'container-test-git-token';
const REGION = 'us-east';
const DEVICE_LABELS = { hardware: 'rpi4' };
/** What the template asks of an rpi4 in us-east (no accelerator, so no ml-inference). */
const TEMPLATE_VERSIONS = { 'edge-gateway': '1.8.2', 'sensor-agent': '2.5.0', 'telemetry-forwarder': '0.14.2' };
const UID = 10001;

interface RegionContainer {
  name: string;
  url: string;
}

let image: string;
let gitRoot: string;
let dataDir: string;
let server: GitHttpServer | undefined;
let remote: FleetRemote;
/** The revision the first container applied and the devices converged on. */
let lastGood: string | undefined;
const containers: string[] = [];
const simulations: Simulation[] = [];

describe('the cascade image running `cascade region` (podman)', () => {
  beforeAll(async () => {
    if (problem) return;
    const built = await buildCascadeImage();
    console.info(`cascade image ${built.tag} ${built.built ? 'built' : 'reused'} in ${built.seconds.toFixed(1)} s`);
    image = built.tag;
    gitRoot = await mkdtemp(join(tmpdir(), 'cascade-container-git-'));
    remote = await makeFleetRemote(gitRoot, 'fleet', await templateFleet());
    server = await startGitHttpServer({ root: gitRoot, auth: { token: GIT_TOKEN } });
    // The volume belongs to the image's unprivileged user, as a Kubernetes fsGroup would arrange.
    dataDir = await mkdtemp(join(tmpdir(), 'cascade-container-data-'));
    await chown(dataDir, UID, UID);
  }, 420_000);

  afterAll(async () => {
    for (const simulation of simulations) await simulation.stop();
    for (const name of containers) await removeContainer(name);
    await server?.stop();
    if (gitRoot) await rm(gitRoot, { recursive: true, force: true });
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 120_000);

  it.skipIf(problem !== null)('runs as uid 10001 with production dependencies, a state volume and a health check', async () => {
    const [inspected] = JSON.parse(await podman(['image', 'inspect', image])) as Array<{
      Config: { User: string; Env: string[]; Entrypoint: string[]; Cmd: string[]; Volumes: Record<string, unknown>; ExposedPorts: Record<string, unknown> };
      Healthcheck?: { Test: string[] };
    }>;
    const config = inspected!.Config;
    expect(config.User).toBe(`${UID}:${UID}`);
    expect(config.Entrypoint).toEqual(['node', '/app/bin/cascade.js']);
    expect(config.Cmd).toEqual(['region']);
    expect(Object.keys(config.Volumes)).toEqual(['/var/lib/cascade']);
    expect(Object.keys(config.ExposedPorts)).toEqual(['8080/tcp']);
    expect(config.Env).toEqual(expect.arrayContaining(['CASCADE_DATA=/var/lib/cascade', 'CASCADE_LISTEN=0.0.0.0:8080']));
    // Podman lists it beside Config; `podman build --format docker` keeps it, as `docker build` does.
    expect(inspected!.Healthcheck?.Test.slice(0, 3)).toEqual(['CMD', 'node', '-e']);
    expect(inspected!.Healthcheck?.Test[3]).toContain('/healthz');

    const listing = await podman(['run', '--rm', ...RUNTIME_FLAGS, '--read-only', '--entrypoint', 'sh', image, '-c', 'id -u && ls /app/node_modules']);
    const [uid, ...modules] = listing.split('\n');
    expect(uid).toBe(String(UID));
    expect(modules).toEqual(expect.arrayContaining(['tsx', 'better-sqlite3', 'isomorphic-git', 'fastify']));
    expect(modules).not.toContain('vitest');
    expect(modules).not.toContain('typescript');
  }, 60_000);

  it.skipIf(problem !== null)('pulls the fleet over git smart HTTP and hands out a commit: devices converge', async () => {
    const region = await startRegionContainer();
    await waitForStatus(region, (s) => s.revision.applied === remote.head, 'the first revision applied');

    const early = await startSimulation({ regionUrl: region.url, devices: 5, prefix: 'early', labels: DEVICE_LABELS, enrollmentToken: ENROLLMENT_TOKEN, applyMs: 20, statsIntervalMs: 0, waitSeconds: 5 });
    simulations.push(early);
    await waitForStatus(region, (s) => s.devices.total === 5 && s.devices.converged === 5, 'five devices converged');
    expect(early.stats().versions).toEqual(countsOf(TEMPLATE_VERSIONS, 5));

    // A rollout is a commit; the git host's webhook asks for a pass at once.
    const rollout = await commitAndPush(remote.workdir, await withVersion('deployments/telemetry-forwarder.yaml', '0.15.0'), 'telemetry-forwarder 0.15.0');
    const webhook = await fetch(`${region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
    expect(webhook.status).toBe(202);
    const status = await waitForStatus(region, (s) => s.revision.applied === rollout && s.devices.converged === 5, 'converged on the rollout');
    expect(status).toMatchObject({ region: REGION, source: { reachable: true, head: rollout }, devices: { total: 5, converged: 5, failed: 0 } });
    expect(early.stats().versions).toEqual(countsOf({ ...TEMPLATE_VERSIONS, 'telemetry-forwarder': '0.15.0' }, 5));
    const inventory = await fetchInventory(region.url);
    expect(inventory.map((d) => d.apps['telemetry-forwarder'])).toEqual(['0.15.0', '0.15.0', '0.15.0', '0.15.0', '0.15.0']);

    // The image's own health check passes inside the container (exit 0 = healthy)...
    await podman(['healthcheck', 'run', region.name]);
    // ...and really asks the server: pointed at a port nobody listens on, it fails.
    const [{ Healthcheck: healthcheck }] = JSON.parse(await podman(['image', 'inspect', image])) as Array<{ Healthcheck: { Test: string[] } }>;
    const check = healthcheck.Test;
    const refused = await podman(['exec', '--env', 'CASCADE_LISTEN=127.0.0.1:1', region.name, ...check.slice(1)]).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(PodmanError);
    expect((refused as PodmanError).exitCode).toBe(1);
    // State lands in the volume, written by the unprivileged user.
    const written = await readdir(dataDir);
    expect(written.length).toBeGreaterThan(0);
    for (const entry of written) expect((await stat(join(dataDir, entry))).uid).toBe(UID);

    // SIGTERM to PID 1: the region closes its store and exits 0.
    await early.stop();
    await podman(['stop', '--time', '20', region.name], { timeoutMs: 40_000 });
    expect(await podman(['inspect', '--format', '{{.State.ExitCode}}', region.name])).toBe('0');
    await removeContainer(region.name);
    lastGood = rollout;
  }, 180_000);

  it.skipIf(problem !== null)('a new container on the same volume serves the last good revision while git is down', async () => {
    expect(lastGood, 'the previous test applies a revision first').toBeDefined();
    server!.setDown(true);
    server!.resetCounters();
    const region = await startRegionContainer();

    const status = await waitForStatus(region, (s) => s.source.error !== null, 'a failed fetch');
    expect(status).toMatchObject({ revision: { applied: lastGood, error: null }, source: { reachable: false } });
    const ready = await fetch(`${region.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, revision: lastGood });

    // Devices new to the region get the last good revision's versions, read back from the volume.
    const late = await startSimulation({ regionUrl: region.url, devices: 3, prefix: 'late', labels: DEVICE_LABELS, enrollmentToken: ENROLLMENT_TOKEN, applyMs: 20, statsIntervalMs: 0, waitSeconds: 5 });
    simulations.push(late);
    // The five devices of the first container are still on record, converged.
    await waitForStatus(region, (s) => s.devices.total === 8 && s.devices.converged === 8, 'eight devices converged');
    expect(late.stats().versions).toEqual(countsOf({ ...TEMPLATE_VERSIONS, 'telemetry-forwarder': '0.15.0' }, 3));
    expect(server!.requests()).toEqual([]);
  }, 180_000);
});

/** The template fleet, with rollouts that finish in seconds: one wave, no bake time, no cap. */
async function templateFleet(): Promise<FileChanges> {
  const dir = join(ROOT, 'fleet-repo-template');
  const files: FileChanges = {};
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true })) {
      const full = join(at, entry.name);
      if (entry.isDirectory()) await walk(full);
      else files[relative(dir, full)] = await readFile(full, 'utf8');
    }
  };
  await walk(dir);
  const fleet = parseDocument(files['fleet.yaml']!);
  fleet.setIn(['spec', 'rollout', 'waves'], [100]);
  fleet.setIn(['spec', 'rollout', 'maxUnavailable'], '100%');
  fleet.setIn(['spec', 'rollout', 'bakeTime'], '0s');
  files['fleet.yaml'] = fleet.toString();
  return files;
}

async function withVersion(path: string, version: string): Promise<FileChanges> {
  const doc = parseDocument(await readFile(join(remote.workdir, path), 'utf8'));
  doc.setIn(['spec', 'version'], version);
  return { [path]: doc.toString() };
}

function countsOf(versions: Record<string, string>, devices: number): Record<string, Record<string, number>> {
  return Object.fromEntries(Object.entries(versions).map(([app, version]) => [app, { [version]: devices }]));
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** Starts a region container on the state volume and waits until it answers /healthz. */
async function startRegionContainer(): Promise<RegionContainer> {
  const name = `cascade-test-${randomBytes(4).toString('hex')}`;
  const port = await freePort();
  containers.push(name);
  await podman(
    [
      'run', '--detach', '--name', name, ...RUNTIME_FLAGS,
      '--network=host',
      // As in Kubernetes (readOnlyRootFilesystem): only the volume and /tmp are writable.
      '--read-only',
      '--env', `CASCADE_REPO=${server!.url}/fleet.git`,
      '--env', `CASCADE_REGION=${REGION}`,
      '--env', `CASCADE_LISTEN=127.0.0.1:${port}`,
      '--env', `CASCADE_ENROLLMENT_TOKEN=${ENROLLMENT_TOKEN}`,
      '--env', `CASCADE_GIT_TOKEN=${GIT_TOKEN}`,
      '--env', 'CASCADE_INTERVAL=2s',
      // The template's artifact URLs are placeholders no region can fetch; its simulated devices download nothing.
      '--env', 'CASCADE_ARTIFACT_RELAY=false',
      '--volume', `${dataDir}:/var/lib/cascade`,
      image,
    ],
    { timeoutMs: 60_000 },
  );
  const region = { name, url: `http://127.0.0.1:${port}` };
  let attempts = 0;
  await waitFor(
    async () => {
      if ((await getJson(`${region.url}/healthz`))?.status === 200) return true;
      // Every second, make sure the container is still there to wait for.
      if (++attempts % 10 === 0 && (await podman(['inspect', '--format', '{{.State.Running}}', name])) !== 'true') {
        throw new Error(`container ${name} exited before answering /healthz:\n${await containerLogs(name)}`);
      }
      return undefined;
    },
    90_000,
    async () => `container ${name} never answered ${region.url}/healthz:\n${await containerLogs(name)}`,
  );
  return region;
}

async function getJson(url: string): Promise<{ status: number; body: unknown } | null> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    return { status: response.status, body: await response.json() };
  } catch {
    return null;
  }
}

async function waitForStatus(region: RegionContainer, done: (status: RegionStatus) => boolean, what: string): Promise<RegionStatus> {
  let last: unknown = null;
  return waitFor(
    async () => {
      const response = await getJson(`${region.url}/api/v1/status`);
      last = response?.body ?? null;
      return response?.status === 200 && done(response.body as RegionStatus) ? (response.body as RegionStatus) : undefined;
    },
    60_000,
    async () => `waiting for ${what}; last status ${JSON.stringify(last)}\n${await containerLogs(region.name)}`,
  );
}
