import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../support/free-port.js';
import { waitFor } from '../../support/region-process.js';
import { SCENARIO_TOKEN, startRegionScenario, type RegionScenario } from '../../support/region-scenario.js';
import { cleanupContainers, containerTestProblem, podman, podmanEnvironment, pushImage, skipUnless, startRegistry, type Registry } from './oci-fixture.js';

/**
 * The whole path from git to a running container: a fleet repository served over git smart HTTP,
 * a real `cascade region` process with --registry-mirror, a real `cascade agent`, podman. The Region
 * document's container policy reaches the device through the region; the image comes through the
 * mirror (a docker-registry pull-through cache of the origin registry).
 */

const FILE = 'test/agent/container/container-git-region.test.ts';
const ROOT = resolve(import.meta.dirname, '../../..');
const scratch = mkdtempSync(join(tmpdir(), 'cascade-ctr-git-'));
const skip = skipUnless(await containerTestProblem(scratch), FILE);
if (skip) rmSync(scratch, { recursive: true, force: true });

const DEVICE = `cgit-${randomBytes(4).toString('hex')}`;
const LABEL = `io.cascade.device=${DEVICE}`;
let env: NodeJS.ProcessEnv;
let origin: Registry;
let mirror: Registry;
let scenario: RegionScenario | undefined;
let agent: ChildProcess | undefined;
let agentLog = '';
let appPort: number;
const digests: Record<string, string> = {};
const hostDir = join(scratch, 'host-config');

function fleet(version: string, hostPaths: string[]): Record<string, string> {
  const repository = `${origin.host}/${DEVICE}/web`;
  return {
    'fleet.yaml': 'apiVersion: cascade/v1\nkind: Fleet\nmetadata:\n  name: f\nspec:\n  rollout:\n    waves: [100]\n',
    'regions/us-east.yaml': `apiVersion: cascade/v1\nkind: Region\nmetadata:\n  name: us-east\nspec:\n  containers:\n    hostPaths: ${JSON.stringify(hostPaths)}\n`,
    'apps/web.yaml': `apiVersion: cascade/v1
kind: App
metadata:
  name: web
spec:
  runtime:
    type: container
    image: ${repository}
    command: [/bin/busybox, sh, -c]
    args: ["trap 'exit 0' TERM; /bin/busybox httpd -f -p 127.0.0.1:${appPort} -h /www & wait"]
    network: host
    volumes:
      - {hostPath: ${hostDir}, target: /config, readOnly: true}
  artifacts:
    "1.0.0": {image: "${repository}:1.0.0", digest: "${digests['1']}"}
    "2.0.0": {image: "${repository}:2.0.0", digest: "${digests['2']}"}
    "3.0.0": {image: "${repository}:3.0.0", digest: "${digests['3']}"}
  healthCheck:
    exec: /bin/busybox wget -q -O /dev/null http://127.0.0.1:${appPort}/healthz
    timeout: 2s
    retries: 2
`,
    'deployments/web.yaml': `apiVersion: cascade/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  app: web\n  version: "${version}"\n`,
  };
}

async function runningImage(): Promise<{ version: string; image: string } | undefined> {
  const ids = (await podman(['ps', '-q', '--filter', `label=${LABEL}`], env)).split('\n').filter(Boolean);
  if (ids.length !== 1) return undefined;
  const [info] = JSON.parse(await podman(['container', 'inspect', ids[0]!], env)) as Array<{ ImageName: string; Config: { Labels: Record<string, string> } }>;
  return { version: info!.Config.Labels['io.cascade.version']!, image: info!.ImageName };
}

describe.skipIf(skip)('a container app from git, through a real region and a registry mirror', () => {
  beforeAll(async () => {
    origin = await startRegistry(join(scratch, 'origin'));
    mirror = await startRegistry(join(scratch, 'mirror'), origin.host);
    env = await podmanEnvironment(join(scratch, 'podman'), [origin.host, mirror.host]);
    appPort = await freePort();
    mkdirSync(hostDir, { recursive: true });
    for (const version of ['1', '2', '3']) {
      digests[version] = await pushImage(env, join(scratch, `image-${version}`), `${origin.host}/${DEVICE}/web:${version}.0.0`, { 'www/healthz': 'ok\n', 'www/version': `${version}.0.0\n` });
    }
    scenario = await startRegionScenario(fleet('1.0.0', ['/nowhere']), ['--registry-mirror', mirror.host]);
    agent = spawn(
      process.execPath,
      [join(ROOT, 'bin/cascade.js'), 'agent', '--region-url', scenario.region.url, '--device-id', DEVICE, '--state-dir', join(scratch, 'agent'),
        '--enrollment-token', SCENARIO_TOKEN, '--wait', '2', '--container-engine', 'podman', '--container-prefix', DEVICE, '--health-interval', '300ms'],
      { cwd: ROOT, env: { ...env, CASCADE_LOG_FORMAT: 'json' }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    agent.stderr!.on('data', (chunk: Buffer) => (agentLog += chunk.toString()));
  }, 180_000);

  afterAll(async () => {
    if (agent && agent.exitCode === null) {
      const exited = new Promise((done) => agent!.once('exit', done));
      agent.kill('SIGKILL');
      await exited;
    }
    if (env) await cleanupContainers(env, LABEL, `${origin?.host}/${DEVICE}/`);
    if (env && mirror) await cleanupContainers(env, LABEL, `${mirror.host}/${DEVICE}/`);
    await scenario?.close();
    await origin?.stop();
    await mirror?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }, 120_000);

  it('refuses a revision whose Region would not allow the host path, then runs the app pulled through the mirror', async () => {
    // The region validates the commit as `cascade validate` does: nothing of it reaches a device.
    const refused = await scenario!.waitForStatus((s) => (s.revision.error ?? []).length > 0, 'the revision to be refused', 60_000);
    expect(refused.revision.applied).toBeNull();
    expect(refused.revision.error!.join('\n')).toContain(`deployments/web.yaml:6:8: Deployment "web" sends app "web" to region "us-east", whose devices would refuse it: host path ${hostDir} is outside the Region's allow-list (spec.containers.hostPaths: /nowhere)`);

    await scenario!.commit(fleet('1.0.0', [hostDir]), 'allow the config folder');
    await scenario!.waitForStatus((s) => s.devices.converged === 1 && s.revision.applied !== null, `convergence on 1.0.0 (agent: ${agentLog.slice(-2000)})`, 90_000);
    expect(await runningImage()).toEqual({ version: '1.0.0', image: `${mirror.host}/${DEVICE}/web@${digests['1']}` });

    await scenario!.commit(fleet('2.0.0', [hostDir]), 'web 2.0.0');
    await waitFor(async () => ((await scenario!.status()).devices.converged === 1 && (await runningImage())?.version === '2.0.0' ? true : undefined), 90_000, () => `convergence on 2.0.0 (agent: ${agentLog.slice(-2000)})`);
    expect(await runningImage()).toEqual({ version: '2.0.0', image: `${mirror.host}/${DEVICE}/web@${digests['2']}` });

    // With the mirror down the device pulls from the registry itself.
    await mirror.stop();
    await scenario!.commit(fleet('3.0.0', [hostDir]), 'web 3.0.0');
    await waitFor(async () => ((await scenario!.status()).devices.converged === 1 && (await runningImage())?.version === '3.0.0' ? true : undefined), 90_000, () => `convergence on 3.0.0 (agent: ${agentLog.slice(-2000)})`);
    expect(await runningImage()).toEqual({ version: '3.0.0', image: `${origin.host}/${DEVICE}/web@${digests['3']}` });
    expect(agentLog).toContain('pull through the registry mirror failed; pulling from the registry');
  }, 240_000);
});
