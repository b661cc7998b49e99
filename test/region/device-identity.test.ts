import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { proofPayload } from '../../src/protocol/device-identity.js';
import { createRegionHttpServer } from '../../src/http/http-server.js';
import { DeviceIdentity } from '../../src/region/device-identity.js';
import { DesiredWatchers } from '../../src/region/routes/desired-watchers.js';
import { registerDeviceApi } from '../../src/region/routes/device-routes.js';
import { createSecurityMetrics } from '../../src/region/security-metrics.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';

const TOKEN = 'let-me-in';
let dir: string;
let app: FastifyInstance;
let store: SqliteStateStore;
let url: string;
let now = 1_700_000_000_000;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cascade-identity-'));
  store = SqliteStateStore.open(join(dir, 'data'));
  app = createRegionHttpServer({ log: false });
  const clock = () => now;
  registerDeviceApi(app, {
    store,
    region: 'eu-west',
    enrollmentToken: TOKEN,
    watchers: new DesiredWatchers((id) => store.getHanded(id)?.generation ?? 0),
    clock,
    identity: new DeviceIdentity({ store, region: 'eu-west', policy: 'auto', metrics: createSecurityMetrics(new Registry()), clock }),
  });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});
afterEach(async () => {
  await app.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const post = (path: string, body: unknown) => fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const spki = (key: KeyObject) => createPublicKey(key).export({ type: 'spki', format: 'der' }).toString('base64');

async function challenge(deviceId: string): Promise<{ nonce: string; region: string }> {
  return (await (await post(`/api/v1/devices/${deviceId}/challenge`, {})).json()) as { nonce: string; region: string };
}

async function enrolWith(deviceId: string, privateKey: KeyObject, publicKey = spki(privateKey)): Promise<Response> {
  const { nonce, region } = await challenge(deviceId);
  const signature = sign(null, proofPayload('enroll', region, deviceId, nonce), privateKey).toString('base64');
  return post('/api/v1/enroll', { deviceId, labels: {}, enrollmentToken: TOKEN, publicKey, proof: { nonce, signature } });
}

describe('hostile key material at enrolment', () => {
  const ed = generateKeyPairSync('ed25519').privateKey;
  const hostileKeys: Array<[string, string]> = [
    ['an RSA key', spki(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey)],
    ['an X25519 key', spki(generateKeyPairSync('x25519').privateKey)],
    ['an EC P-256 key', spki(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey)],
    ['random bytes', Buffer.from('not a key at all, just bytes').toString('base64')],
    ['a raw 32-byte key without SPKI', Buffer.alloc(32, 7).toString('base64')],
  ];
  for (const [what, publicKey] of hostileKeys) {
    it(`refuses ${what} and enrols nothing`, async () => {
      const answer = await enrolWith('dev-h', ed, publicKey);
      expect([400, 403]).toContain(answer.status);
      expect(store.getDevice('dev-h')).toBeNull();
    });
  }

  it('refuses shapes the schema does not allow: a key that is not base64, an oversized one, a proof missing a field', async () => {
    const { nonce } = await challenge('dev-s');
    for (const body of [
      { publicKey: 'a$b', proof: { nonce, signature: 'AA==' } },
      { publicKey: 'A'.repeat(600), proof: { nonce, signature: 'AA==' } },
      { publicKey: spki(ed), proof: { nonce } },
      { publicKey: spki(ed), proof: { nonce: 'short', signature: 'AA==' } },
      { publicKey: spki(ed), proof: { nonce, signature: 'AA==', extra: 1 } },
    ]) {
      const answer = await post('/api/v1/enroll', { deviceId: 'dev-s', labels: {}, enrollmentToken: TOKEN, ...body });
      expect(answer.status).toBe(400);
    }
    expect(store.getDevice('dev-s')).toBeNull();
  });

  it('a nonce is good only for the id it was issued to, only once, and only for 60 s', async () => {
    const key = generateKeyPairSync('ed25519').privateKey;
    const forOther = await challenge('dev-other');
    const stolen = sign(null, proofPayload('enroll', 'eu-west', 'dev-n', forOther.nonce), key).toString('base64');
    expect((await post('/api/v1/enroll', { deviceId: 'dev-n', labels: {}, enrollmentToken: TOKEN, publicKey: spki(key), proof: { nonce: forOther.nonce, signature: stolen } })).status).toBe(403);

    const { nonce } = await challenge('dev-n');
    const proof = { nonce, signature: sign(null, proofPayload('enroll', 'eu-west', 'dev-n', nonce), key).toString('base64') };
    const body = { deviceId: 'dev-n', labels: {}, enrollmentToken: TOKEN, publicKey: spki(key), proof };
    expect((await post('/api/v1/enroll', body)).status).toBe(201);
    expect((await post('/api/v1/enroll', body)).status).toBe(403);

    const late = await challenge('dev-n');
    now += 61_000;
    const lateProof = { nonce: late.nonce, signature: sign(null, proofPayload('enroll', 'eu-west', 'dev-n', late.nonce), key).toString('base64') };
    expect((await post('/api/v1/enroll', { ...body, proof: lateProof })).status).toBe(403);
    expect((await enrolWith('dev-n', key)).status).toBe(201);
  });

  it('token renewal: unknown ids get 404, ids without a key are told to enrol', async () => {
    const key = generateKeyPairSync('ed25519').privateKey;
    const proofFor = async (id: string) => {
      const { nonce } = await challenge(id);
      return { nonce, signature: sign(null, proofPayload('renew-token', 'eu-west', id, nonce), key).toString('base64') };
    };
    expect((await post('/api/v1/devices/ghost/token', { proof: await proofFor('ghost') })).status).toBe(404);
    expect((await post('/api/v1/enroll', { deviceId: 'legacy', labels: {}, enrollmentToken: TOKEN })).status).toBe(201);
    const unbound = await post('/api/v1/devices/legacy/token', { proof: await proofFor('legacy') });
    expect(unbound.status).toBe(403);
    expect(((await unbound.json()) as { error: { code: string } }).error.code).toBe('device-key-unbound');
  });
});

describe('spent nonces', () => {
  it('are forgotten once expired even when no further proof comes (an enrolment burst leaves nothing behind)', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      let time = 1_700_000_000_000;
      const identity = new DeviceIdentity({ store, region: 'eu-west', policy: 'auto', metrics: createSecurityMetrics(new Registry()), clock: () => time });
      const key = generateKeyPairSync('ed25519').privateKey;
      const log = pino({ level: 'silent' });
      for (let i = 0; i < 20; i++) {
        const deviceId = `burst-${i}`;
        const { nonce, region } = identity.challenge(deviceId);
        const signature = sign(null, proofPayload('enroll', region, deviceId, nonce), key).toString('base64');
        identity.decide({ deviceId, labels: {}, enrollmentToken: TOKEN, publicKey: spki(key), proof: { nonce, signature } }, null, log);
      }
      expect(identity.spentNonces).toBe(20);
      // Still unexpired: a replay within the minute must still be refused, so they stay.
      time += 30_000;
      vi.advanceTimersByTime(30_000);
      expect(identity.spentNonces).toBe(20);
      time += 32_000;
      vi.advanceTimersByTime(32_000);
      expect(identity.spentNonces).toBe(0);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
