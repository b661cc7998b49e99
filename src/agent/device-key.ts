import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CascadeError } from '../core/errors.js';

/** What the device shows and signs with: its Ed25519 key (protocol/device-identity.ts). */
export interface DeviceKey {
  /** DER SubjectPublicKeyInfo, base64: the wire `publicKey`. */
  readonly publicKey: string;
  /** `SHA256:...`, as `cascade devices list --pending` shows it. */
  readonly fingerprint: string;
  /** Ed25519 signature over `data`, base64. */
  sign(data: Buffer): string;
}

export const DEVICE_KEY_FILE = 'device-key.pem';

function fromPrivate(privateKey: KeyObject): DeviceKey {
  const der = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  return {
    publicKey: der.toString('base64'),
    fingerprint: `SHA256:${createHash('sha256').update(der).digest('base64').replace(/=+$/, '')}`,
    sign: (data) => sign(null, data, privateKey).toString('base64'),
  };
}

/** PKCS#8 DER of an Ed25519 private key, before its 32-byte seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * A key pair kept in memory only: for simulated devices, made on first use. With `seedText` it is
 * derived from it (sha256 as the Ed25519 seed), so a simulated device restarted under the same id and
 * seed is the same device to the region; never for real devices, whose keys must be secret.
 */
export function lazyDeviceKey(seedText?: string): DeviceKey {
  let key: DeviceKey | null = null;
  const make = (): KeyObject =>
    seedText === undefined
      ? generateKeyPairSync('ed25519').privateKey
      : createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, createHash('sha256').update(`cascade-simulated-device\n${seedText}`).digest()]), format: 'der', type: 'pkcs8' });
  const get = () => (key ??= fromPrivate(make()));
  return {
    get publicKey() {
      return get().publicKey;
    },
    get fingerprint() {
      return get().fingerprint;
    },
    sign: (data) => get().sign(data),
  };
}

/**
 * The device key in `<stateDir>/device-key.pem` (PKCS#8 PEM, mode 0600), made on the first start.
 * Written to a scratch file and linked into place, so two agents starting at once on the same folder
 * end with one key, and a crash never leaves half a key. A key file others may read is refused:
 * anyone who reads it can act as this device.
 */
export function loadOrCreateDeviceKey(stateDir: string): { key: DeviceKey; created: boolean } {
  const path = join(stateDir, DEVICE_KEY_FILE);
  const existing = readKey(path);
  if (existing) return { key: existing, created: false };
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const scratch = `${path}.${process.pid}.tmp`;
  try {
    const fd = openSync(scratch, 'w', 0o600);
    try {
      writeSync(fd, pem);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(scratch, 0o600);
    try {
      linkSync(scratch, path);
    } catch (err) {
      // Another agent on the same folder was quicker: use its key.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return { key: readKey(path)!, created: false };
    }
  } catch (err) {
    if (err instanceof CascadeError) throw err;
    throw new CascadeError('device-key-write-failed', `cannot write the device key ${path}: ${(err as Error).message}; check that --state-dir is writable`);
  } finally {
    rmSync(scratch, { force: true });
  }
  return { key: readKey(path)!, created: true };
}

function readKey(path: string): DeviceKey | null {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CascadeError('device-key-unreadable', `cannot read the device key ${path}: ${(err as Error).message}`);
  }
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) {
    throw new CascadeError('device-key-exposed', `the device key ${path} may be read by others (mode ${mode.toString(8)}); run chmod 600 ${path} (and, if others did read it, ask an operator for \`cascade devices reset ID\` and delete the file)`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new CascadeError('device-key-invalid', `${path} is not a private key; move it away to make a new one (an operator must then run \`cascade devices reset ID\`)`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new CascadeError('device-key-invalid', `${path} is a ${key.asymmetricKeyType} key; the device key must be Ed25519`);
  return fromPrivate(key);
}
