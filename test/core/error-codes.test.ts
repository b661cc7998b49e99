import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, isErrorCode } from '../../src/core/error-codes.js';
import { TEMPORARY_CODES } from '../../src/core/errors.js';
import { errorCodes } from '../../src/protocol/types.js';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** The literal codes src/ throws (`new CascadeError('code'`, `new HttpError(404, 'code'`, ...) or answers (`error: { code: 'code'`). */
function thrownCodes(): Map<string, string> {
  const found = new Map<string, string>();
  const pattern = /new (?:CascadeError|HttpError|RegionHttpError|AppApplyError)\(\s*(?:\d+,\s*)?'([^']+)'/g;
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(pattern)) found.set(match[1]!, file);
    for (const match of text.matchAll(/error: \{ code: '([^']+)'/g)) found.set(match[1]!, file);
  }
  return found;
}

describe('error codes', () => {
  it('lists every code src/ throws, so a new one is a deliberate, exported addition', () => {
    const thrown = thrownCodes();
    expect(thrown.size).toBeGreaterThan(100);
    const missing = [...thrown].filter(([code]) => !isErrorCode(code)).map(([code, file]) => `${code} (${file})`);
    expect(missing).toEqual([]);
  });

  it('holds the wire codes and the temporary ones, each once, all kebab-case', () => {
    for (const code of Object.values(errorCodes)) expect(isErrorCode(code)).toBe(true);
    for (const code of TEMPORARY_CODES) expect(isErrorCode(code)).toBe(true);
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    for (const code of ERROR_CODES) expect(code).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
  });
});
