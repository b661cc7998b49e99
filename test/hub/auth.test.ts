import { afterEach, describe, expect, it } from 'vitest';
import { regionToken, signBody } from '../../src/protocol/hub-auth.js';
import { HUB_TOKEN, getJson, pushSummary, startTestHub, summary, tempDir } from './hub-fixture.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function hub(overrides = {}) {
  const tmp = await tempDir('cascade-hub-auth-');
  cleanups.push(tmp.remove);
  const running = await startTestHub(tmp.path, overrides);
  cleanups.push(() => running.close());
  return running;
}

describe('region tokens', () => {
  it('derive from the hub secret and the region name only', () => {
    expect(regionToken(HUB_TOKEN, 'eu-west')).toBe(regionToken(HUB_TOKEN, 'eu-west'));
    expect(regionToken(HUB_TOKEN, 'eu-west')).not.toBe(regionToken(HUB_TOKEN, 'us-east'));
    expect(regionToken('another-secret', 'eu-west')).not.toBe(regionToken(HUB_TOKEN, 'eu-west'));
    expect(regionToken(HUB_TOKEN, 'eu-west')).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('pushing a summary', () => {
  it('needs the region token as a bearer', async () => {
    const running = await hub();
    const answer = await pushSummary(running.url, summary('eu-west'), { token: null, signature: null });
    expect(answer.status).toBe(401);
    expect(answer.body.error.code).toBe('region-token-missing');
    expect(answer.body.error.message).toContain('cascade hub region-token eu-west');
  });

  it('refuses a region that reports as another, by path or by body', async () => {
    const running = await hub();
    const eu = regionToken(HUB_TOKEN, 'eu-west');
    const asOther = await pushSummary(running.url, summary('us-east'), { token: eu });
    expect(asOther.status).toBe(403);
    expect(asOther.body.error.code).toBe('region-token-invalid');

    // Its own path and token, but a body that claims another region.
    const lying = await pushSummary(running.url, summary('us-east'), { token: eu, asRegion: 'eu-west' });
    expect(lying.status).toBe(400);
    expect(lying.body.error.code).toBe('region-mismatch');

    // The hub secret itself is not a region token.
    expect((await pushSummary(running.url, summary('eu-west'), { token: HUB_TOKEN })).status).toBe(403);
    expect(running.fleet().regions).toEqual([]);
  });

  it('checks the body signature, so a changed body is refused', async () => {
    const running = await hub();
    const token = regionToken(HUB_TOKEN, 'eu-west');
    const s = summary('eu-west', { updatesSent: 1 });
    const signedOther = signBody(token, JSON.stringify({ ...s, updatesSent: 999 }));
    const answer = await pushSummary(running.url, s, { signature: signedOther });
    expect(answer.status).toBe(401);
    expect(answer.body.error.code).toBe('summary-signature-invalid');
    expect((await pushSummary(running.url, s, { signature: null })).status).toBe(401);
    expect((await pushSummary(running.url, s)).status).toBe(200);
  });
});

describe('reads', () => {
  it('are open without --read-token', async () => {
    const running = await hub();
    expect((await getJson(`${running.url}/api/v1/fleet`)).status).toBe(200);
    expect((await getJson(`${running.url}/`)).status).toBe(200);
  });

  it('with --read-token need a bearer or the cookie a browser gets from ?token= once', async () => {
    const running = await hub({ readToken: 'reader' });
    const denied = await getJson(`${running.url}/api/v1/fleet`);
    expect(denied.status).toBe(401);
    expect(denied.body.error.code).toBe('read-token-required');
    expect((await getJson(`${running.url}/`)).status).toBe(401);
    expect((await getJson(`${running.url}/api/v1/fleet`, { authorization: 'Bearer reader' })).status).toBe(200);
    expect((await getJson(`${running.url}/api/v1/fleet`, { authorization: `Bearer ${HUB_TOKEN}` })).status).toBe(200);
    expect((await getJson(`${running.url}/api/v1/fleet`, { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await getJson(`${running.url}/metrics`)).status).toBe(401);
    expect((await getJson(`${running.url}/healthz`)).status).toBe(200);

    const login = await fetch(`${running.url}/?token=reader`, { redirect: 'manual' });
    expect(login.status).toBe(303);
    expect(login.headers.get('location')).toBe('/');
    const cookie = login.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^cascade_hub_read=reader; Path=\/; HttpOnly; SameSite=Strict/);
    const withCookie = await getJson(`${running.url}/api/v1/dashboard`, { cookie: cookie.split(';')[0]! });
    expect(withCookie.status).toBe(200);
    expect(withCookie.body.mode).toBe('hub');
    expect((await fetch(`${running.url}/?token=wrong`, { redirect: 'manual' })).status).toBe(401);

    // Pushes are not reads: a region still pushes with its own token.
    expect((await pushSummary(running.url, summary('eu-west'))).status).toBe(200);
  });
});
