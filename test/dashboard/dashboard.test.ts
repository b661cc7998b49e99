import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { registerDashboard } from '../../src/dashboard/serve.js';
import type { HubSummaryInput } from '../../src/protocol/hub-summary.js';
import { createRegionHttpServer } from '../../src/http/http-server.js';
import { pushSummary, rollout, startTestHub, summary, tempDir, wave } from '../hub/hub-fixture.js';
import { CHROMIUM, requireTool } from '../support/requirements.js';
import { launchChromium } from './browser.js';

const A = 'a1'.repeat(20);
const B = 'b2'.repeat(20);
const DASHBOARD_DIR = fileURLToPath(new URL('../../src/dashboard/', import.meta.url));

const missing = await requireTool(CHROMIUM);

let browser: Browser;
beforeAll(async () => {
  if (missing) return;
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** A page that fails the test if it asks anything of another origin or logs an error. */
async function openPage(url: string): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  cleanups.push(() => context.close());
  const page = await context.newPage();
  const problems: string[] = [];
  const origin = new URL(url).origin;
  page.on('request', (request) => {
    if (!request.url().startsWith(origin)) problems.push(`request to another origin: ${request.url()}`);
  });
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  await page.goto(url);
  return { page, problems };
}

function devicesList(n: number, state: 'converged' | 'updating' | 'failed', version: string) {
  return Array.from({ length: n }, (_, i) => ({ id: `dev-${String(i + 1).padStart(3, '0')}`, state, apps: { web: version } }));
}

describe('dashboard files', () => {
  it('load nothing from outside their origin: no http(s) URL, no CDN, no external font', async () => {
    for (const name of await readdir(DASHBOARD_DIR)) {
      if (name.endsWith('.ts')) continue;
      const text = await readFile(`${DASHBOARD_DIR}/${name}`, 'utf8');
      expect(text, name).not.toMatch(/https?:\/\//);
      expect(text, name).not.toMatch(/@import|url\(/);
    }
  });
});

describe.skipIf(missing)('dashboard in Chromium', () => {
  it('shows the regions, live rollout progress, a halted rollout in red with how to undo it, and searches devices', async () => {
    const tmp = await tempDir('cascade-dash-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path, { staleAfterMs: 60_000 });
    cleanups.push(() => hub.close());
    const applied = { attempted: B, applied: B, error: null };
    const webAt = (healthy: number, updating: number, pending: number) =>
      rollout('web', B, 'Progressing', [wave(1, 10, { healthy: 2 }), wave(2, 100, { healthy, updating, pending })], { currentWave: 2, message: 'wave 2 of 2' });

    await pushSummary(hub.url, summary('eu-west', { revision: applied, devices: { total: 20, converged: 4, updating: 4, failed: 0, offline: 0 }, rollouts: [webAt(2, 4, 12)], devicesList: devicesList(20, 'updating', '1.0.0') }));
    await pushSummary(hub.url, summary('us-east', { revision: { attempted: A, applied: A, error: null }, devices: { total: 5, converged: 5, updating: 0, failed: 0, offline: 0 }, devicesList: devicesList(5, 'converged', '1.0.0') }));

    const { page, problems } = await openPage(hub.url);
    await page.locator('tr.region[data-region="eu-west"]').waitFor();
    await page.locator('tr.region[data-region="us-east"]').waitFor();
    const wave2 = page.locator(`article.rollout[data-revision="${B}"] .rollout-region[data-region="eu-west"] li.wave[data-wave="2"] .wave-count`);
    await expect.poll(() => wave2.textContent(), { timeout: 60_000 }).toBe('2/18');

    // The region progresses: the page follows without a reload.
    await pushSummary(hub.url, summary('eu-west', { revision: applied, devices: { total: 20, converged: 12, updating: 8, failed: 0, offline: 0 }, rollouts: [webAt(10, 8, 0)], devicesList: devicesList(20, 'updating', '2.0.0') }));
    await expect.poll(() => wave2.textContent(), { timeout: 60_000 }).toBe('10/18');
    await expect.poll(() => page.locator('tr.region[data-region="eu-west"] .counts').textContent(), { timeout: 60_000 }).toContain('12/20 converged');

    // Then it halts: the commit turns red, with the reason and the commands that undo it.
    const halted = rollout('web', B, 'Halted', [wave(1, 10, { healthy: 2 }), wave(2, 100, { healthy: 10, failed: 5, pending: 3 })], {
      currentWave: 2,
      halted: { reason: '5 of 15 attempted devices failed (33% >= 20%)', devices: ['dev-001'], at: 1 },
    });
    await pushSummary(hub.url, summary('eu-west', { revision: applied, devices: { total: 20, converged: 12, updating: 3, failed: 5, offline: 0 }, rollouts: [halted], devicesList: [...devicesList(5, 'failed', '1.0.0'), ...devicesList(15, 'converged', '2.0.0').map((d, i) => ({ ...d, id: `dev-${100 + i}` }))] }));
    const card = page.locator(`article.rollout[data-revision="${B}"]`);
    await expect.poll(() => card.getAttribute('class'), { timeout: 60_000 }).toContain('rollout-halted');
    await expect.poll(() => card.locator('.halt').textContent(), { timeout: 60_000 }).toContain('5 of 15 attempted devices failed');
    expect(await card.locator('.undo').textContent()).toContain(`git revert ${B}`);
    expect(await card.locator('.undo').textContent()).toContain('cascade rollback --deployment web');
    const border = await card.evaluate((el) => getComputedStyle(el).borderLeftColor);
    expect(border).toBe('rgb(209, 52, 58)');
    expect(await page.locator('#live').textContent()).toContain('1 halted');

    // Device search: by state, then by version.
    await page.getByLabel('Search devices').fill('failed');
    await expect.poll(() => page.locator('#device-count').textContent(), { timeout: 60_000 }).toContain('5 of 25 devices match “failed”');
    expect(await page.locator('tr.device').count()).toBe(5);
    await page.getByLabel('Search devices').fill('web=2.0.0 eu-west');
    await expect.poll(() => page.locator('tr.device').count(), { timeout: 60_000 }).toBe(15);
    expect(await page.locator('#device-count').textContent()).toContain('15 of 25 devices match');

    await page.screenshot({ path: '/tmp/cascade-dashboard-hub.png', fullPage: true });
    expect(problems).toEqual([]);
  });

  it('marks a stale region', async () => {
    const tmp = await tempDir('cascade-dash-');
    cleanups.push(tmp.remove);
    let now = Date.now();
    const hub = await startTestHub(tmp.path, { staleAfterMs: 60_000, clock: () => now });
    cleanups.push(() => hub.close());
    await pushSummary(hub.url, summary('eu-west'));
    now += 120_000;
    const { page, problems } = await openPage(hub.url);
    const row = page.locator('tr.region[data-region="eu-west"]');
    await row.waitFor();
    expect(await row.getAttribute('class')).toContain('region-stale');
    expect(await row.locator('.badge-stale').textContent()).toMatch(/stale · last heard 2m ago/);
    expect(problems).toEqual([]);
  });

  it('is served by a region for its own devices', async () => {
    const app = createRegionHttpServer({ log: false });
    const input: HubSummaryInput = {
      region: 'eu-west',
      revision: { attempted: B, applied: B, error: null },
      source: { reachable: true },
      devices: { total: 3, converged: 3, updating: 0, failed: 0, offline: 0 },
      updatesSent: 3,
      rollouts: [rollout('web', B, 'Complete', [wave(1, 100, { healthy: 3 })])],
      devicesList: devicesList(3, 'converged', '2.0.0'),
    };
    registerDashboard(app, { mode: 'region', summary: () => input });
    await app.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => app.close());
    const address = app.server.address() as { port: number };
    const url = `http://127.0.0.1:${address.port}`;

    const html = await fetch(url);
    expect(html.headers.get('content-security-policy')).toContain("default-src 'self'");
    const { page, problems } = await openPage(url);
    await page.locator(`article.rollout-complete[data-revision="${B}"]`).waitFor();
    expect(await page.locator('#scope').textContent()).toContain('region eu-west');
    await expect.poll(() => page.locator('tr.device').count(), { timeout: 60_000 }).toBe(3);
    // This server has no event stream (only the dashboard is registered): the page says so and polls.
    await expect.poll(() => page.locator('#live').textContent(), { timeout: 60_000 }).toMatch(/^Polling · updated/);
    expect(await page.locator('#events').textContent()).toContain('No event stream from this server; polling.');
    expect(problems.filter((p) => p !== 'console error: Failed to load resource: the server responded with a status of 404 (Not Found)')).toEqual([]);
  });
});
