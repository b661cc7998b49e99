import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceSummary, HubSummary } from '../../src/protocol/hub-summary.js';
import { pushSummary, rollout, startTestHub, summary, tempDir, wave } from '../hub/hub-fixture.js';
import { CHROMIUM, requireTool } from '../support/requirements.js';
import { launchChromium } from './browser.js';

const A = 'a1'.repeat(20);
const B = 'b2'.repeat(20);
const SCREENSHOT = '/tmp/cascade-dashboard-phone.png';
/** Hostile text from git: markup, and one long word that must wrap rather than widen the page. */
const SUBJECT = `web 2.0.0 <img src=x onerror="document.title='pwned'"> ${'x'.repeat(160)}`;
const AUTHOR = 'Mallory <mallory@example.invalid>';

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

async function openPage(url: string, viewport: { width: number; height: number }): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport });
  cleanups.push(() => context.close());
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  await page.goto(url);
  return { page, problems };
}

function devices(n: number, fields: (i: number) => Partial<DeviceSummary>): DeviceSummary[] {
  return Array.from({ length: n }, (_, i) => ({ id: `dev-${String(i + 1).padStart(3, '0')}`, state: 'converged' as const, apps: { web: '1.0.0' }, ...fields(i) }));
}

/** eu-west on commit B (web 2.0.0), its rollout `state`; 2 canaries failed 2.0.0 when halted, 6 held back. */
function euWest(state: 'Complete' | 'Halted'): HubSummary {
  const halted = state === 'Halted';
  return summary('eu-west', {
    revision: { attempted: B, applied: B, error: null, subject: SUBJECT, author: AUTHOR },
    devices: { total: 10, converged: halted ? 2 : 10, updating: 0, pending: halted ? 6 : 0, failed: halted ? 2 : 0, offline: 0 },
    rollouts: [
      halted
        ? rollout('web', B, 'Halted', [wave(1, 20, { failed: 2, healthy: 2 }), wave(2, 100, { pending: 6 })], {
            currentWave: 1, halted: { reason: '2 of 4 attempted devices failed (50% >= 20%)', devices: ['dev-001', 'dev-002'], at: 1 },
          })
        : rollout('web', B, 'Complete', [wave(1, 20, { healthy: 4 }), wave(2, 100, { healthy: 6 })]),
    ],
    devicesList: devices(10, (i) =>
      !halted ? { apps: { web: '2.0.0' } }
        : i < 2 ? { state: 'failed', apps: { web: '1.0.0' }, failed: { web: '2.0.0' } }
        : i < 4 ? { apps: { web: '2.0.0' } }
        : { state: 'pending', heldBy: 'web' }),
  });
}

describe.skipIf(missing)('the dashboard follows the event stream in Chromium', () => {
  it('updates in place on an event: focus, caret and the nodes on screen survive; the failed row shows app and attempted version; held devices say so', async () => {
    const tmp = await tempDir('cascade-dash-live-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());
    await pushSummary(hub.url, summary('us-east', { revision: { attempted: A, applied: A, error: null }, devices: { total: 1, converged: 1, updating: 0, failed: 0, offline: 0 }, devicesList: devices(1, () => ({ id: 'us-1' })) }));
    await pushSummary(hub.url, euWest('Complete'));

    const { page, problems } = await openPage(hub.url, { width: 1280, height: 900 });
    const card = page.locator(`article.rollout[data-revision="${B}"]`);
    await expect.poll(() => card.getAttribute('data-state'), { timeout: 60_000 }).toBe('Complete');
    await expect.poll(() => page.locator('#live').textContent(), { timeout: 60_000 }).toMatch(/^Live · /);
    // Subject and author, as text: the markup in the subject is not markup.
    expect(await card.locator('.rollout-commit .subject').textContent()).toBe(SUBJECT);
    expect(await card.locator('.rollout-commit .author').textContent()).toBe(AUTHOR);
    expect(await page.locator(`tr.region[data-region="eu-west"] .commit .subject`).textContent()).toBe(SUBJECT);
    expect(await page.locator('img').count()).toBe(0);

    // Someone types in the search box (matches every device) and leaves the caret mid-word.
    const search = page.getByLabel('Search devices');
    await search.click();
    await search.pressSequentially('dev');
    await page.evaluate(() => (document.getElementById('device-query') as HTMLInputElement).setSelectionRange(1, 1));
    await expect.poll(() => page.locator('#device-count').textContent(), { timeout: 60_000 }).toContain('10 of 11 devices match “dev”');
    // Marks nodes on screen: an in-place update keeps them, a redraw would replace them.
    await page.evaluate(() => {
      (document.querySelector('tr.device[data-device="dev-005"]') as unknown as { mark: number }).mark = 1;
      (document.querySelector('tr.region[data-region="eu-west"]') as unknown as { mark: number }).mark = 1;
    });

    // The rollout halts. Nothing moves in the fleet before it, so the page polls only every 15 s:
    // what brings the halt is the event stream (the event shows in the page's event list).
    await pushSummary(hub.url, euWest('Halted'));
    await page.locator('#events li.event', { hasText: 'rollout.halted' }).waitFor({ timeout: 60_000 });
    await expect.poll(() => card.getAttribute('data-state'), { timeout: 60_000 }).toBe('Halted');
    await expect.poll(() => page.locator('tr.device[data-device="dev-001"]').getAttribute('class'), { timeout: 60_000 }).toContain('device-failed');

    expect(await page.evaluate(() => document.activeElement?.id)).toBe('device-query');
    expect(await page.evaluate(() => {
      const input = document.getElementById('device-query') as HTMLInputElement;
      return [input.value, input.selectionStart, input.selectionEnd];
    })).toEqual(['dev', 1, 1]);
    expect(await page.evaluate(() => (document.querySelector('tr.device[data-device="dev-005"]') as unknown as { mark?: number }).mark)).toBe(1);
    expect(await page.evaluate(() => (document.querySelector('tr.region[data-region="eu-west"]') as unknown as { mark?: number }).mark)).toBe(1);

    // The failed device: the version it runs, and the app and version that failed.
    const failedRow = page.locator('tr.device[data-device="dev-001"]');
    expect(await failedRow.locator('.failed-version').textContent()).toBe('web 2.0.0 failed');
    expect(await failedRow.locator('td.app-failed .running').textContent()).toBe('1.0.0');
    // Devices the halt holds back say so, not "pending".
    const heldRow = page.locator('tr.device[data-device="dev-007"]');
    expect(await heldRow.locator('.badge').textContent()).toBe('held by halt');
    expect(await heldRow.locator('.badge').getAttribute('title')).toContain('rollout of web halted');
    expect(await page.locator('tr.device .badge-pending').count()).toBe(0);
    await page.screenshot({ path: '/tmp/cascade-dashboard-live.png', fullPage: true });
    // Typing goes on where it was.
    await page.keyboard.type('ev-00');
    expect(await search.inputValue()).toBe('dev-00ev');
    expect(problems).toEqual([]);
  }, 120_000);

  it('fits a 375 px phone: no horizontal scroll, with long commit subjects, many apps and a halted rollout', async () => {
    const tmp = await tempDir('cascade-dash-phone-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());
    await pushSummary(hub.url, summary('us-east', { revision: { attempted: A, applied: A, error: null }, devices: { total: 1, converged: 1, updating: 0, failed: 0, offline: 0 } }));
    await pushSummary(hub.url, euWest('Complete'));
    const wide = euWest('Halted');
    // Many apps per device and a long device id: the table may scroll inside itself, never the page.
    wide.devicesList = wide.devicesList!.map((d, i) => ({
      ...d,
      id: i === 9 ? `gateway-${'0123456789'.repeat(6)}` : d.id,
      apps: { ...d.apps, camera: '3.1.4-build.20261201', 'telemetry-forwarder': '10.0.0', db: '5.0.0' },
    }));
    expect((await pushSummary(hub.url, wide)).status).toBe(200);

    const { page, problems } = await openPage(hub.url, { width: 375, height: 812 });
    await expect.poll(() => page.locator(`article.rollout[data-revision="${B}"]`).getAttribute('data-state'), { timeout: 60_000 }).toBe('Halted');
    await expect.poll(() => page.locator('tr.device').count(), { timeout: 60_000 }).toBe(10);
    await page.locator('#events li.event').first().waitFor({ timeout: 60_000 }).catch(() => undefined);
    const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, body: document.body.scrollWidth, inner: window.innerWidth }));
    expect(widths.scroll, JSON.stringify(widths)).toBeLessThanOrEqual(widths.inner);
    expect(widths.body, JSON.stringify(widths)).toBeLessThanOrEqual(widths.inner);
    // Nothing sticks out past the right edge either (an overflow hidden by a parent would not widen the page).
    const outside = await page.evaluate(() =>
      Array.from(document.querySelectorAll('body *'))
        .filter((el) => !el.closest('.table-scroll, pre'))
        .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
        .map((el) => `${el.tagName}.${el.className}`)
        .slice(0, 10),
    );
    expect(outside).toEqual([]);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    await page.screenshot({ path: SCREENSHOT.replace('.png', '-top.png') });
    expect(problems).toEqual([]);
  }, 120_000);
});
