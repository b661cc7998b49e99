import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { regionToken } from '../../src/protocol/hub-auth.js';
import { startSimulation } from '../../src/simulate/simulation.js';
import { waitFor } from '../support/region-process.js';
import { SCENARIO_TOKEN, startRegionScenario } from '../support/region-scenario.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';
import { HUB_TOKEN, startTestHub, tempDir } from '../hub/hub-fixture.js';
import { CHROMIUM, requireTool } from '../support/requirements.js';
import { launchChromium } from './browser.js';

const DEVICES = 20;
const E2E_SCREENSHOT = '/tmp/cascade-dashboard-e2e.png';

const missing = await requireTool(CHROMIUM);

let browser: Browser;
beforeAll(async () => {
  if (missing) return;
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

describe.skipIf(missing)('the hub dashboard, end to end', () => {
  it('follows a real region rollout live in Chromium, and marks the rollout that halts', async () => {
    const tmp = await tempDir('cascade-dash-e2e-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());

    // A real region process, pushing to the hub with its own token.
    const s = await startRegionScenario(
      smallFleet({ web: '1.0.0', db: null, rollout: '    waves: [25, 100]\n    bakeTime: 2s\n    failureThreshold: 1\n' }),
      ['--hub-url', hub.url, '--hub-token', regionToken(HUB_TOKEN, 'us-east')],
    );
    cleanups.push(() => s.close());
    const sim = await startSimulation({
      regionUrl: s.region.url,
      devices: DEVICES,
      enrollmentToken: SCENARIO_TOKEN,
      prefix: 'dev',
      applyMs: 800,
      initial: { web: '1.0.0' },
      failVersion: '3.0.0',
      statsIntervalMs: 0,
      waitSeconds: 5,
    });
    cleanups.push(() => sim.stop());
    await s.waitForStatus((st) => st.devices.converged === DEVICES && st.updatesSent === DEVICES, 'initial convergence');

    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    cleanups.push(() => context.close());
    const page = await context.newPage();
    const foreign: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(hub.url)) foreign.push(request.url());
    });
    await page.goto(hub.url);
    const regionRow = page.locator('tr.region[data-region="us-east"]');
    await regionRow.waitFor({ timeout: 60_000 });
    await expect.poll(() => regionRow.locator('.counts').textContent(), { timeout: 60_000 }).toContain(`${DEVICES}/${DEVICES} converged`);

    // A good rollout: the page shows its progress moving, wave by wave, until Complete.
    const good = await s.commit({ 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    const card = page.locator(`article.rollout[data-revision="${good}"]`);
    await card.waitFor({ timeout: 60_000 });
    // Each look at the card reads its state and its wave counts in one go inside the page: read
    // apart, a redraw in between pairs a new state with old counts (a Complete card with '6/6 0/14').
    const look = () => card.evaluate((el) => ({ state: el.getAttribute('data-state'), counts: Array.from(el.querySelectorAll('.wave-count'), (c) => c.textContent).join(' ') }));
    const seen: Array<{ state: string | null; counts: string }> = [];
    const complete = await waitFor(
      async () => {
        const now = await look();
        if (seen.at(-1)?.counts !== now.counts || seen.at(-1)?.state !== now.state) seen.push(now);
        return now.state === 'Complete' ? now : undefined;
      },
      60_000,
      async () => `progress seen: ${seen.map((v) => `${v.state} ${v.counts}`).join(' | ')}; region: ${JSON.stringify(await s.rollout('web'))}`,
    );
    // The page showed the rollout on its way (wave 1 bakes 2 s, longer than the page's poll), and
    // the card that says Complete counts every device of every wave as updated.
    expect(seen.some((v) => v.state === 'Progressing'), seen.map((v) => `${v.state} ${v.counts}`).join(' | ')).toBe(true);
    expect(complete.counts).toMatch(/^(\d+)\/\1 (\d+)\/\2$/);
    expect(await card.getAttribute('class')).toContain('rollout-complete');

    // A version that fails on every device: the rollout halts in its first wave and turns red.
    const bad = await s.commit({ 'deployments/web.yaml': webDeployment('3.0.0') }, 'web 3.0.0');
    const badCard = page.locator(`article.rollout[data-revision="${bad}"]`);
    await expect.poll(() => badCard.getAttribute('data-state'), { timeout: 60_000 }).toBe('Halted');
    await expect.poll(() => badCard.getAttribute('class'), { timeout: 60_000 }).toContain('rollout-halted');
    expect(await badCard.locator('.halt').textContent()).toMatch(/web 3\.0\.0 halted in us-east: .*fail/);
    expect(await badCard.locator('.undo').textContent()).toContain(`git revert ${bad}`);
    expect(await badCard.evaluate((el) => getComputedStyle(el).borderLeftColor)).toBe('rgb(209, 52, 58)');
    // The good commit is still shown Complete below it.
    expect(await card.getAttribute('data-state')).toBe('Complete');

    // The device table finds the failed canaries.
    await page.getByLabel('Search devices').fill('failed');
    await expect.poll(() => page.locator('#device-count').textContent(), { timeout: 60_000 }).toMatch(/^\d+ of 20 devices match “failed”/);
    const rows = await page.locator('tr.device').evaluateAll((trs) => trs.map((tr) => tr.className));
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((c) => c.includes('device-failed'))).toBe(true);

    await page.screenshot({ path: E2E_SCREENSHOT, fullPage: true });
    expect(foreign).toEqual([]);

    // The hub API says the same.
    const view = hub.revision(bad)!;
    expect(view.state).toBe('Halted');
    expect(hub.revision(good)!.state).toBe('Complete');
  }, 180_000);
});
