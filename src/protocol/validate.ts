import type { Labels } from '../core/types.js';
import { CascadeError } from '../core/errors.js';
import { MAX_LABELS } from './types.js';

/** Device ids: letters, digits and `._:-`, starting with a letter or digit, at most 128 characters. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Label keys follow Kubernetes: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters. */
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Label values: empty, or like a label name. */
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID_PATTERN.test(id);
}

export function labelKeyProblem(key: string): string | null {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : null;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== null && (prefix.length > 253 || !LABEL_PREFIX.test(prefix))) {
    return `label key '${key}': the prefix before '/' must be a lowercase DNS subdomain of at most 253 characters`;
  }
  if (!LABEL_NAME.test(name)) {
    return `label key '${key}': the name must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit`;
  }
  return null;
}

export function labelValueProblem(key: string, value: unknown): string | null {
  if (typeof value !== 'string') return `label '${key}': the value must be a string`;
  if (!LABEL_VALUE.test(value)) {
    return `label '${key}': the value '${value.slice(0, 80)}' must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit`;
  }
  return null;
}

/** The first thing wrong with a label set, or null when it is valid. */
export function labelsProblem(labels: Record<string, unknown>): string | null {
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) return `at most ${MAX_LABELS} labels are allowed, got ${keys.length}`;
  for (const key of keys) {
    const problem = labelKeyProblem(key) ?? labelValueProblem(key, labels[key]);
    if (problem) return problem;
  }
  return null;
}

/**
 * Parses `k=v,k2=v2` (a CLI flag or environment variable) into labels.
 * `where` names the flag in the error, e.g. `--labels`.
 */
export function parseLabelList(text: string | undefined, where: string): Labels {
  const labels: Labels = {};
  if (!text || text.trim() === '') return labels;
  for (const part of text.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) {
      throw new CascadeError('invalid-labels', `${where}: '${item}' is not key=value (expected e.g. ${where} ring=canary,site=berlin)`);
    }
    labels[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  const problem = labelsProblem(labels);
  if (problem) throw new CascadeError('invalid-labels', `${where}: ${problem}`);
  return labels;
}
