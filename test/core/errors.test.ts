import { describe, expect, it } from 'vitest';
import { CascadeError, isTemporary } from '../../src/core/errors.js';
import { HttpError } from '../../src/http/http-server.js';
import { RegionHttpError } from '../../src/agent/http/region-client.js';

describe('the error model: final or temporary', () => {
  it('takes the kind from the code, unless the thrower says', () => {
    expect(new CascadeError('source-unreachable', 'x').retry).toBe('temporary');
    expect(new CascadeError('bad-rollout', 'x').retry).toBe('final');
    expect(new CascadeError('bad-rollout', 'x', undefined, { retry: 'temporary' }).retry).toBe('temporary');
  });

  it('counts a peer 5xx or 429 as temporary and its other refusals as final', () => {
    expect(isTemporary(new HttpError(503, 'not-ready', 'x'))).toBe(true);
    expect(isTemporary(new HttpError(400, 'invalid-body', 'x'))).toBe(false);
    expect(isTemporary(new RegionHttpError(429, 'enrollment-rate-limited', 'x', 'http://r'))).toBe(true);
    expect(isTemporary(new RegionHttpError(403, 'device-mismatch', 'x', 'http://r'))).toBe(false);
  });

  it('counts network system errors as temporary and anything else as final', () => {
    expect(isTemporary(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isTemporary(new TypeError('x is undefined'))).toBe(false);
    expect(isTemporary(null)).toBe(false);
  });
});
