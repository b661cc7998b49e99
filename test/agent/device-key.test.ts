import { verify, createPublicKey } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEVICE_KEY_FILE, lazyDeviceKey, loadOrCreateDeviceKey } from '../../src/agent/device-key.js';
import { proofPayload, verifyProof } from '../../src/protocol/device-identity.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cascade-key-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('the device key', () => {
  it('is made once, mode 0600, and the same key comes back on every later start', () => {
    const first = loadOrCreateDeviceKey(join(dir, 'state'));
    expect(first.created).toBe(true);
    expect(statSync(join(dir, 'state', DEVICE_KEY_FILE)).mode & 0o777).toBe(0o600);
    const again = loadOrCreateDeviceKey(join(dir, 'state'));
    expect(again).toMatchObject({ created: false });
    expect(again.key.publicKey).toBe(first.key.publicKey);
    expect(again.key.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  it('signs proofs the region verifies, and only for what was signed', () => {
    const { key } = loadOrCreateDeviceKey(dir);
    const signature = key.sign(proofPayload('enroll', 'eu', 'dev-1', 'n'.repeat(20)));
    expect(verifyProof(key.publicKey, 'enroll', 'eu', 'dev-1', 'n'.repeat(20), signature)).toBe(true);
    expect(verifyProof(key.publicKey, 'renew-token', 'eu', 'dev-1', 'n'.repeat(20), signature)).toBe(false);
    expect(verifyProof(key.publicKey, 'enroll', 'us', 'dev-1', 'n'.repeat(20), signature)).toBe(false);
    expect(verifyProof(key.publicKey, 'enroll', 'eu', 'dev-2', 'n'.repeat(20), signature)).toBe(false);
    expect(verifyProof(lazyDeviceKey().publicKey, 'enroll', 'eu', 'dev-1', 'n'.repeat(20), signature)).toBe(false);
    const spki = createPublicKey({ key: Buffer.from(key.publicKey, 'base64'), format: 'der', type: 'spki' });
    expect(verify(null, proofPayload('enroll', 'eu', 'dev-1', 'n'.repeat(20)), spki, Buffer.from(signature, 'base64'))).toBe(true);
  });

  it('refuses a key file others may read, and one that is not an Ed25519 key, saying what to do', () => {
    loadOrCreateDeviceKey(dir);
    const path = join(dir, DEVICE_KEY_FILE);
    chmodSync(path, 0o644);
    expect(() => loadOrCreateDeviceKey(dir)).toThrow(/may be read by others \(mode 644\); run chmod 600/);
    writeFileSync(path, 'not a key', { mode: 0o600 });
    chmodSync(path, 0o600);
    expect(() => loadOrCreateDeviceKey(dir)).toThrow(/is not a private key/);
    expect(readFileSync(path, 'utf8')).toBe('not a key');
  });

  it('a simulated device makes its key only when first used', () => {
    const key = lazyDeviceKey();
    const other = lazyDeviceKey();
    expect(key.publicKey).toBe(key.publicKey);
    expect(key.publicKey).not.toBe(other.publicKey);
  });
});
