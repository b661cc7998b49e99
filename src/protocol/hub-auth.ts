import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Per-region credentials derived from the hub's secret, so the hub stores no per-region secret and
 * a region that knows its own token cannot compute another region's:
 *   region token = base64url(HMAC-SHA256(hub token, "region:" + name))
 * A push carries `Authorization: Bearer <region token>` and
 * `X-Cascade-Signature: sha256=<hex HMAC-SHA256(region token, raw body)>`.
 */
export function regionToken(hubToken: string, region: string): string {
  return createHmac('sha256', hubToken).update(`region:${region}`, 'utf8').digest('base64url');
}

export const SIGNATURE_HEADER = 'x-cascade-signature';

export function signBody(key: string, body: string): string {
  return `sha256=${createHmac('sha256', key).update(body, 'utf8').digest('hex')}`;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Constant-time comparison of two secrets of any length (hashing first makes the lengths equal). */
export function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

/** The token of `Authorization: Bearer <token>`, or null. */
export function bearerToken(header: string | string[] | undefined): string | null {
  if (typeof header !== 'string') return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1]! : null;
}
