import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A fresh device token: 32 random bytes, base64url. */
export function issueDeviceToken(): string {
  return randomBytes(32).toString('base64url');
}

/** What the region stores instead of a device token. */
export function hashDeviceToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Constant-time comparison of two secrets of any length (hashing first makes the lengths equal). */
export function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}
