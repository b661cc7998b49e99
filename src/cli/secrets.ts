import { readFileSync } from 'node:fs';
import { CascadeError } from '../core/errors.js';

/**
 * A secret from its flag or variable, or else from the file named by `<VARIABLE>_FILE` (a mounted
 * Kubernetes or Docker secret), trailing newline removed. Secrets never need to be baked into an image.
 */
export function secretFrom(value: string | undefined, variable: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (value) return value;
  const file = env[`${variable}_FILE`];
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new CascadeError('secret-file-unreadable', `cannot read ${variable}_FILE=${file}: ${(err as Error).message}`);
  }
}

/** A yes/no environment variable: only 1, true, yes and on (any case) mean yes. */
export function envFlag(variable: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(1|true|yes|on)$/i.test(env[variable]?.trim() ?? '');
}
