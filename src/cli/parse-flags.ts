import { InvalidArgumentError } from 'commander';
import { parseDuration } from '../core/duration.js';

/** Commander argument parsers that name the flag in their error. */
export function durationFlag(value: string): number {
  try {
    return parseDuration(value);
  } catch {
    throw new InvalidArgumentError(`"${value}" is not a duration; use e.g. 500ms, 30s, 5m or 1h30m.`);
  }
}

export function listenFlag(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new InvalidArgumentError(`"${value}" is not HOST:PORT; use e.g. 0.0.0.0:8080, 127.0.0.1:0 or [::1]:8080.`);
  }
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

/** A share: `10%` or a fraction such as `0.1`, from 0 to 100%. */
export function fractionFlag(value: string): number {
  const text = value.trim();
  const n = text.endsWith('%') ? Number(text.slice(0, -1)) / 100 : Number(text);
  if (text === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`"${value}" is not a share; use e.g. 10% or 0.1 (from 0% to 100%).`);
  return n;
}

export function positiveIntFlag(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`"${value}" is not a positive whole number.`);
  return n;
}

export function labelsFlag(value: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of value.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`"${pair}" is not key=value; use e.g. --labels hw=rpi4,ring=beta.`);
    labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return labels;
}
