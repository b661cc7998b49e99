import { regionDashboard } from '../../src/dashboard/serve.js';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { regionToken } from '../../src/protocol/hub-auth.js';
import type { RunningHub } from '../../src/hub/hub-server.js';
import { startRegion } from '../../src/region/compose.js';
import { startSimulation } from '../../src/simulate/simulation.js';
import { commitFiles, makeLocalRepo } from '../support/git-fixtures.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';
import { HUB_TOKEN, eventually, getJson, startTestHub, tempDir } from './hub-fixture.js';

const log = pino({ level: 'silent' });

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

describe('a region pushing to the hub', () => {
  it('reports its revision, rollouts and devices; keeps working while the hub is down; catches up when it returns', async () => {
    const tmp = await tempDir('cascade-region-push-');
    cleanups.push(tmp.remove);
    const repo = await makeLocalRepo(join(tmp.path, 'fleet'), smallFleet({ web: '1.0.0', db: null }));
    let hub: RunningHub = await startTestHub(join(tmp.path, 'hub'));
    cleanups.push(() => hub.close());
    const hubPort = Number(new URL(hub.url).port);

    const region = await startRegion({
      plugins: [regionDashboard],
      repo: repo.dir,
      branch: 'main',
      region: 'us-east',
      host: '127.0.0.1',
      port: 0,
      dataDir: join(tmp.path, 'region'),
      intervalMs: 3_600_000,
      enrollmentToken: 'enrol',
      operatorToken: 'operator-secret',
      hub: { url: hub.url, token: regionToken(HUB_TOKEN, 'us-east') },
      log,
    });
    cleanups.push(() => region.close());
    const sim = await startSimulation({ regionUrl: region.url, devices: 4, enrollmentToken: 'enrol', prefix: 'dev', applyMs: 20, initial: { web: '1.0.0' }, statsIntervalMs: 0, waitSeconds: 2, log });
    cleanups.push(() => sim.stop());

    const converged = await eventually(
      () => {
        const r = hub.fleet().regions[0];
        return r && r.devices.converged === 4 && r.revision.applied === repo.head ? r : undefined;
      },
      20_000,
      () => JSON.stringify(hub.fleet()),
    );
    expect(converged.rollouts.map((r) => [r.deployment, r.version])).toEqual([['web', '1.0.0']]);
    const devices = (await getJson(`${hub.url}/api/v1/dashboard/devices?q=web=1.0.0`)).body;
    expect(devices).toMatchObject({ total: 4, matched: 4, truncatedRegions: [] });

    // The hub goes away; the region goes on: a new commit is applied and rolled out.
    await hub.close();
    const next = await commitFiles(repo.dir, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    await region.reconcileNow();
    await eventually(() => (sim.stats().versions['web']?.['2.0.0'] === 4 ? true : undefined), 20_000, () => JSON.stringify(sim.stats()));
    expect(region.status().revision.applied).toBe(next);

    // Back on the same address with its data: it gets the region's latest state without anyone asking.
    hub = await startTestHub(join(tmp.path, 'hub'), { port: hubPort });
    const caughtUp = await eventually(
      () => {
        const view = hub.revision(next);
        return view?.state === 'Complete' ? view : undefined;
      },
      30_000,
      () => JSON.stringify(hub.fleet()),
    );
    expect(caughtUp.regions[0]).toMatchObject({ region: 'us-east', applied: true });
    expect(caughtUp.deployments[0]).toMatchObject({ deployment: 'web', version: '2.0.0', counts: { converged: 4 } });

    // The region serves its own dashboard too.
    const own = (await getJson(`${region.url}/api/v1/dashboard`)).body;
    expect(own).toMatchObject({ mode: 'region', regions: [{ region: 'us-east' }] });
    expect((await fetch(`${region.url}/`)).headers.get('content-type')).toContain('text/html');
    // Its device list is guarded like the region's inventory.
    expect((await getJson(`${region.url}/api/v1/dashboard/devices`)).status).toBe(401);
    const listed = await getJson(`${region.url}/api/v1/dashboard/devices`, { authorization: 'Bearer operator-secret' });
    expect(listed.body).toMatchObject({ total: 4, matched: 4 });
  });
});
