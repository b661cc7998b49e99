/**
 * Device identity bound to a key (Mender's model), the part both sides must agree on byte for byte.
 *
 * A device makes an Ed25519 key pair once and sends the public key (DER SubjectPublicKeyInfo,
 * base64) when it enrols. Whenever it must show it holds the key (enrolling an id that is already
 * bound, or renewing its token) it asks the region for a nonce and signs `proofPayload(...)`:
 * a fixed prefix, the purpose, the region, the device id and the nonce, one per line. The nonce is
 * issued by the region, used once and short-lived, so a proof seen on the wire cannot be replayed;
 * the purpose and region keep a proof made for one thing from being used for another.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { DeviceId } from '../core/types.js';

export type ProofPurpose = 'enroll' | 'renew-token';

const PROOF_PREFIX = 'cascade-device-proof-v1';

/** The exact bytes a device signs. */
export function proofPayload(purpose: ProofPurpose, region: string, deviceId: DeviceId, nonce: string): Buffer {
  return Buffer.from(`${PROOF_PREFIX}\n${purpose}\n${region}\n${deviceId}\n${nonce}\n`, 'utf8');
}

/** Every Ed25519 SubjectPublicKeyInfo (RFC 8410) is these 12 bytes, then the 32-byte key. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * The Ed25519 public key in a wire `publicKey` field, or null when it is not one. The DER form of an
 * Ed25519 key is fixed, so it is checked here and the raw key imported as a JWK: OpenSSL's DER decoder
 * costs ~10x more, a cost every enrolment of a large fleet pays.
 */
export function parseDevicePublicKey(encoded: string): KeyObject | null {
  const der = Buffer.from(encoded, 'base64');
  if (der.length !== ED25519_SPKI_PREFIX.length + 32 || !der.subarray(0, ED25519_SPKI_PREFIX.length).equals(ED25519_SPKI_PREFIX)) return null;
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: der.subarray(ED25519_SPKI_PREFIX.length).toString('base64url') }, format: 'jwk' });
    return key.asymmetricKeyType === 'ed25519' ? key : null;
  } catch {
    return null;
  }
}

/** Checks a signature (base64) over `proofPayload(...)` with the public key in wire form. */
export function verifyProof(publicKey: string, purpose: ProofPurpose, region: string, deviceId: DeviceId, nonce: string, signature: string): boolean {
  const key = parseDevicePublicKey(publicKey);
  if (!key) return false;
  const sig = Buffer.from(signature, 'base64');
  if (sig.length !== 64) return false;
  try {
    return verify(null, proofPayload(purpose, region, deviceId, nonce), key, sig);
  } catch {
    return false;
  }
}
