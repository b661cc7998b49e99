import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulation } from '../../src/simulate/simulation.js';
import { ENROLLMENT_TOKEN, RegionFixture, until } from './region-fixture.js';

/** The simulator refuses what a real agent refuses before connecting, so a load test shows the same failures. */
describe('simulated agents and artifact URLs', () => {
  let region: RegionFixture;
  beforeAll(async () => {
    region = await RegionFixture.start();
  });
  afterAll(async () => {
    await region.close();
  });

  it('fail a version whose artifact URL a real agent would refuse, and install one under an allowed origin', async () => {
    const simulation = await startSimulation({
      regionUrl: region.url,
      devices: 1,
      enrollmentToken: ENROLLMENT_TOKEN,
      prefix: 'sim',
      applyMs: 1,
      waitSeconds: 30,
      artifactPolicy: { allowOrigins: ['http://127.0.0.1:9/'] },
    });
    try {
      const device = 'sim-0001';
      await until(() => region.store.getDevice(device) !== null, 20_000, 'enrolment');
      const artifact = (url: string) => ({ url, sha256: 'a'.repeat(64), size: 1 });
      region.handOut([device], { web: { version: '1.0.0', deployment: 'web' } }, { web: { artifacts: { '1.0.0': artifact('http://169.254.169.254/latest/meta-data/') } } });
      await until(() => region.store.getDevice(device)?.apps.web?.state === 'failed', 20_000, 'a failed report');
      expect(region.store.getDevice(device)!.apps.web!.message).toMatch(/link-local .*refused|refused.*link-local/);
      region.handOut([device], { web: { version: '1.0.1', deployment: 'web' } }, { web: { artifacts: { '1.0.1': artifact('http://127.0.0.1:9/web.tgz') } } });
      await until(() => region.store.getDevice(device)?.apps.web?.state === 'healthy', 20_000, 'a healthy report');
    } finally {
      await simulation.stop();
    }
  });
});
