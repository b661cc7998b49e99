import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fetchInventory, RegionClient, RegionHttpError } from '../../src/agent/http/region-client.js';
import { DesiredWatchers } from '../../src/region/routes/desired-watchers.js';
import { hashDeviceToken } from '../../src/region/device-tokens.js';
import { registerDeviceApi } from '../../src/region/routes/device-routes.js';
import { createRegionHttpServer } from '../../src/http/http-server.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';
import type { AppCatalog } from '../../src/reconciler/state-store.js';

const ENROLLMENT_TOKEN = 'let-me-in';

interface Region {
  app: FastifyInstance;
  store: SqliteStateStore;
  watchers: DesiredWatchers;
  url: string;
  enrolled: string[];
  reported: string[];
}

let dir: string;
let region: Region;

async function startRegion(enrollmentToken: string | null = ENROLLMENT_TOKEN): Promise<Region> {
  const store = SqliteStateStore.open(join(dir, 'data'));
  const watchers = new DesiredWatchers((id) => store.getHanded(id)?.generation ?? 0);
  const app = createRegionHttpServer({ log: false });
  const enrolled: string[] = [];
  const reported: string[] = [];
  registerDeviceApi(app, {
    store,
    region: 'eu-west',
    enrollmentToken,
    watchers,
    clock: () => 1_700_000_000_000,
    onEnroll: (id) => enrolled.push(id),
    onReport: (id) => reported.push(id),
  });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, store, watchers, url: address, enrolled, reported };
}

async function stopRegion(r: Region): Promise<void> {
  await r.app.close();
  r.store.close();
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cascade-api-'));
  region = await startRegion();
});
afterEach(async () => {
  await stopRegion(region);
  rmSync(dir, { recursive: true, force: true });
});

async function enrolled(deviceId: string, labels: Record<string, string> = {}): Promise<RegionClient> {
  const client = new RegionClient({ regionUrl: region.url, deviceId });
  await client.enroll(labels, ENROLLMENT_TOKEN);
  return client;
}

async function post(path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const response = await fetch(region.url + path, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  return { status: response.status, json: await response.json() };
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(condition()).toBe(true);
}

async function rejected(promise: Promise<unknown>): Promise<RegionHttpError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(RegionHttpError);
    return err as RegionHttpError;
  }
  throw new Error('expected the request to fail');
}

const catalog: AppCatalog = {
  web: {
    runtime: { type: 'exec', install: 'install-web {version}' },
    artifacts: { '2.0.0': { url: 'http://127.0.0.1:1/web-2.0.0', sha256: 'b'.repeat(64), size: 42 } },
    healthCheck: { exec: 'check-web', retries: 1 },
  },
};

function handOut(devices: string[], version: string, revision = 'rev1'): number {
  const changes = new Map(devices.map((id) => [id, { web: { version, deployment: 'web-all' } }]));
  region.store.recordApplied(revision, changes, catalog, 1);
  const count = region.store.handOut(changes, revision, 2);
  region.watchers.notify(changes.keys());
  return count;
}

describe('enrolment', () => {
  it('issues a device token with the right enrollment token and stores only its hash', async () => {
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'dev-1' });
    const answer = await client.enroll({ ring: 'canary' }, ENROLLMENT_TOKEN);
    expect(answer).toEqual({ deviceId: 'dev-1', region: 'eu-west', token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
    expect(region.enrolled).toEqual(['dev-1']);
    expect(region.store.getDevice('dev-1')).toMatchObject({ labels: { ring: 'canary' }, enrolledAt: 1_700_000_000_000 });

    const db = new Database(join(dir, 'data', 'state.sqlite'), { readonly: true });
    const row = db.prepare('SELECT token_hash FROM devices WHERE id = ?').get('dev-1') as { token_hash: string };
    db.close();
    expect(row.token_hash).not.toContain(answer.token);
    expect(row.token_hash).toBe(hashDeviceToken(answer.token));
  });

  it('refuses a wrong or missing enrollment token with 401', async () => {
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'dev-1' });
    const wrong = await rejected(client.enroll({}, 'guess'));
    expect(wrong.status).toBe(401);
    expect(wrong.code).toBe('enrollment-token-invalid');
    expect(wrong.url).toBe(`${region.url}/api/v1/enroll`);
    const missing = await rejected(client.enroll({}, null));
    expect(missing.status).toBe(401);
    expect(missing.code).toBe('enrollment-token-invalid');
    expect(region.store.listDevices()).toEqual([]);
  });

  it('accepts any device when enrolment is open', async () => {
    await stopRegion(region);
    region = await startRegion(null);
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'dev-open' });
    await client.enroll({}, null);
    await client.report({ apps: {} });
    expect(region.store.getDevice('dev-open')).not.toBeNull();
  });

  it('re-enrolling replaces the token and the labels', async () => {
    const first = await enrolled('dev-1', { ring: 'a' });
    const oldToken = first.token!;
    const second = await enrolled('dev-1', { ring: 'b' });
    expect(second.token).not.toBe(oldToken);
    expect(region.store.getDevice('dev-1')!.labels).toEqual({ ring: 'b' });
    const stale = new RegionClient({ regionUrl: region.url, deviceId: 'dev-1', token: oldToken });
    const err = await rejected(stale.report({ apps: {} }));
    expect(err.status).toBe(401);
    expect(err.code).toBe('device-token-invalid');
    await second.report({ apps: {} });
  });

  it('validates device ids and labels', async () => {
    const badId = await post('/api/v1/enroll', JSON.stringify({ deviceId: '-dash', labels: {}, enrollmentToken: ENROLLMENT_TOKEN }));
    expect(badId.status).toBe(400);
    expect(badId.json.error.code).toBe('device-id-invalid');
    const badLabel = await post('/api/v1/enroll', JSON.stringify({ deviceId: 'ok', labels: { 'bad key!': 'x' }, enrollmentToken: ENROLLMENT_TOKEN }));
    expect(badLabel.status).toBe(400);
    expect(badLabel.json.error).toEqual({ code: 'labels-invalid', message: expect.stringContaining("'bad key!'") });
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    const tooMany = await post('/api/v1/enroll', JSON.stringify({ deviceId: 'ok', labels: many, enrollmentToken: ENROLLMENT_TOKEN }));
    expect(tooMany.status).toBe(400);
    expect(region.store.listDevices()).toEqual([]);
  });
});

describe('reports', () => {
  it('stores what the device reports and calls onReport', async () => {
    const client = await enrolled('dev-1', { ring: 'a' });
    await client.report({ apps: { web: { version: '1.0.0', state: 'healthy' }, db: { version: null, state: 'failed', message: 'disk full' } }, labels: { ring: 'b' } });
    expect(region.store.getDevice('dev-1')).toMatchObject({
      labels: { ring: 'b' },
      lastSeen: 1_700_000_000_000,
      apps: { web: { version: '1.0.0', state: 'healthy' }, db: { version: null, state: 'failed', message: 'disk full' } },
    });
    expect(region.reported).toEqual(['dev-1']);
  });

  it('a device cannot report or read as another device (403), a bad token gets 401', async () => {
    const a = await enrolled('dev-a');
    await enrolled('dev-b');
    const asB = new RegionClient({ regionUrl: region.url, deviceId: 'dev-b', token: a.token });
    const report = await rejected(asB.report({ apps: { web: { version: '6.6.6', state: 'healthy' } } }));
    expect(report.status).toBe(403);
    expect(report.code).toBe('device-mismatch');
    const read = await rejected(asB.getDesired(null, 0));
    expect(read.status).toBe(403);
    expect(read.code).toBe('device-mismatch');
    expect(region.store.getDevice('dev-b')!.apps).toEqual({});

    const forged = new RegionClient({ regionUrl: region.url, deviceId: 'dev-a', token: 'x'.repeat(43) });
    expect((await rejected(forged.report({ apps: {} }))).status).toBe(401);
    const none = await post('/api/v1/devices/dev-a/report', JSON.stringify({ apps: {} }));
    expect(none.status).toBe(401);
    expect(none.json.error.code).toBe('device-token-missing');
  });

  it('bad bodies get 4xx JSON errors that say what is wrong and change nothing', async () => {
    const client = await enrolled('dev-1');
    await client.report({ apps: { web: { version: '1.0.0', state: 'healthy' } } });
    const before = region.store.getDevice('dev-1');
    const auth = { authorization: `Bearer ${client.token}` };
    const path = '/api/v1/devices/dev-1/report';

    const cases: { body: string; status: number; code: string; message: RegExp; headers?: Record<string, string> }[] = [
      { body: '{"apps": {', status: 400, code: 'invalid-json', message: /not valid JSON/ },
      { body: '', status: 400, code: 'invalid-json', message: /empty/ },
      { body: '[]', status: 400, code: 'invalid-body', message: /body must be object/ },
      { body: '{}', status: 400, code: 'invalid-body', message: /missing required field 'apps'/ },
      { body: '{"apps": {}, "colour": "red"}', status: 400, code: 'invalid-body', message: /unknown field 'colour'/ },
      { body: '{"apps": {"web": {"version": "1", "state": "exploded"}}}', status: 400, code: 'invalid-body', message: /body\/apps\/web\/state must be one of 'installing', 'healthy', 'failed'/ },
      { body: '{"apps": {"web": {"version": 2, "state": "healthy"}}}', status: 400, code: 'invalid-body', message: /body\/apps\/web\/version/ },
      { body: '{"apps": {"web": {"version": "1", "state": "healthy", "extra": 1}}}', status: 400, code: 'invalid-body', message: /unknown field 'extra'/ },
      { body: '{"apps": {"bad name": {"version": "1", "state": "healthy"}}}', status: 400, code: 'invalid-body', message: /'bad name'/ },
      { body: '{"apps": {}, "labels": {"ring": "not ok!"}}', status: 400, code: 'labels-invalid', message: /label 'ring'/ },
      { body: '{"__proto__": {"x": 1}, "apps": {}}', status: 400, code: 'invalid-json', message: /JSON/ },
      { body: JSON.stringify({ apps: { web: { version: '1', state: 'healthy', message: 'x'.repeat(70_000) } } }), status: 413, code: 'body-too-large', message: /65536 bytes/ },
      { body: 'apps=1', status: 415, code: 'unsupported-media-type', message: /application\/json/, headers: { 'content-type': 'text/x-weird' } },
    ];
    for (const c of cases) {
      const answer = await post(path, c.body, { ...auth, ...c.headers });
      expect({ body: c.body.slice(0, 60), status: answer.status, code: answer.json.error?.code }).toEqual({ body: c.body.slice(0, 60), status: c.status, code: c.code });
      expect(answer.json.error.message).toMatch(c.message);
    }
    expect(region.store.getDevice('dev-1')).toEqual(before);
    expect(region.reported).toEqual(['dev-1']);
  });

  it('unknown routes get a JSON 404', async () => {
    const response = await fetch(`${region.url}/api/v1/nope`);
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: { code: 'not-found', message: 'no route GET /api/v1/nope' } });
  });
});

describe('desired state', () => {
  it('is empty with generation 0 before anything is handed', async () => {
    const client = await enrolled('dev-1');
    const result = await client.getDesired(null, 0);
    expect(result).toEqual({ status: 200, etag: '"0"', body: { device: 'dev-1', region: 'eu-west', revision: null, generation: 0, apps: {} } });
  });

  it('carries the runtime, the artifact of the version and the health check from the catalog', async () => {
    const client = await enrolled('dev-1');
    expect(handOut(['dev-1'], '2.0.0')).toBe(1);
    const result = await client.getDesired(null, 0);
    expect(result).toEqual({
      status: 200,
      etag: '"1"',
      body: {
        device: 'dev-1',
        region: 'eu-west',
        revision: 'rev1',
        generation: 1,
        apps: { web: { version: '2.0.0', deployment: 'web-all', runtime: catalog.web!.runtime, artifact: catalog.web!.artifacts!['2.0.0'], healthCheck: catalog.web!.healthCheck } },
      },
    });
    handOut(['dev-1'], '3.0.0', 'rev2');
    const next = await client.getDesired('"1"', 0);
    expect(next.status === 200 && next.body.apps.web).toEqual({ version: '3.0.0', deployment: 'web-all', runtime: catalog.web!.runtime, healthCheck: catalog.web!.healthCheck });
  });

  it('answers 304 for an unchanged ETag after the wait', async () => {
    const client = await enrolled('dev-1');
    handOut(['dev-1'], '2.0.0');
    expect(await client.getDesired('"1"', 0)).toEqual({ status: 304 });
    const started = Date.now();
    expect(await client.getDesired('"1"', 1)).toEqual({ status: 304 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('a long poll returns 200 as soon as handOut changes that device, not for other devices', async () => {
    const client = await enrolled('dev-1');
    await enrolled('dev-2');
    handOut(['dev-1', 'dev-2'], '2.0.0');
    const poll = client.getDesired('"1"', 60);
    let settled = false;
    void poll.then(() => (settled = true));
    await until(() => region.watchers.size === 1);
    // A change for another device, and a notify that changes nothing, keep it waiting.
    const other = new Map([['dev-2', { web: { version: '9.9.9', deployment: 'web-all' } }]]);
    region.store.handOut(other, 'rev2', 3);
    region.watchers.notify(['dev-1', 'dev-2']);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(settled).toBe(false);

    const changes = new Map([['dev-1', { web: { version: '2.1.0', deployment: 'web-all' } }]]);
    region.store.handOut(changes, 'rev3', 4);
    region.watchers.notify(changes.keys());
    const result = await poll;
    expect(result.status).toBe(200);
    expect(result.status === 200 && [result.etag, result.body.apps.web!.version]).toEqual(['"2"', '2.1.0']);
    expect(region.watchers.size).toBe(0);
  });

  it('a long poll is released when the client hangs up', async () => {
    const client = await enrolled('dev-1');
    const controller = new AbortController();
    const poll = client.getDesired('"0"', 60, controller.signal);
    await until(() => region.watchers.size === 1);
    controller.abort();
    await expect(poll).rejects.toThrow();
    await until(() => region.watchers.size === 0);
  });

  it('closing the server answers open long polls', async () => {
    const client = await enrolled('dev-1');
    const poll = client.getDesired('"0"', 60);
    await until(() => region.watchers.size === 1);
    await region.app.close();
    expect(await poll).toEqual({ status: 304 });
  });

  it('rejects a wait over 60 seconds and unknown query parameters', async () => {
    const client = await enrolled('dev-1');
    const auth = { authorization: `Bearer ${client.token}` };
    const long = await fetch(`${region.url}/api/v1/devices/dev-1/desired?wait=61`, { headers: auth });
    expect(long.status).toBe(400);
    expect((await long.json()).error.code).toBe('invalid-query');
    const odd = await fetch(`${region.url}/api/v1/devices/dev-1/desired?wait=abc`, { headers: auth });
    expect(odd.status).toBe(400);
    const extra = await fetch(`${region.url}/api/v1/devices/dev-1/desired?colour=red`, { headers: auth });
    expect(extra.status).toBe(400);
  });
});

describe('inventory', () => {
  it('lists devices with their labels and reported versions', async () => {
    const a = await enrolled('dev-a', { ring: 'canary' });
    await enrolled('dev-b');
    await a.report({ apps: { web: { version: '1.0.0', state: 'healthy' }, db: { version: null, state: 'failed', message: 'no' } } });
    const inventory = await fetchInventory(region.url);
    expect(inventory).toEqual([
      { id: 'dev-a', region: 'eu-west', labels: { ring: 'canary' }, apps: { web: '1.0.0' } },
      { id: 'dev-b', region: 'eu-west', labels: {}, apps: {} },
    ]);
  });
});
