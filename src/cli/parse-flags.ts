import { InvalidArgumentError, Option } from 'commander';
import { CascadeError } from '../core/errors.js';
import { ALLOW_ORIGIN_ENV, parseAllowedOrigins, type ArtifactUrlPolicy } from '../core/artifact-url.js';
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

/** Commander parser for a repeatable flag: each use adds to the list. */
export function repeatableFlag(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** `--allow-artifact-origin URL-PREFIX` (repeatable; env CASCADE_ALLOW_ARTIFACT_ORIGIN, comma-separated). */
export function allowArtifactOriginOption(): Option {
  return new Option(
    '--allow-artifact-origin <url-prefix>',
    `allow artifacts under this URL prefix even on http: or a loopback/link-local host, for a lab or a test (repeatable; env ${ALLOW_ORIGIN_ENV}, comma-separated)`,
  ).argParser(repeatableFlag);
}

/** The artifact policy of the flags above (and --allow-http-artifacts where a command has it). */
export function artifactPolicyFrom(flags: { allowArtifactOrigin?: string[]; allowHttpArtifacts?: boolean }): ArtifactUrlPolicy {
  let allowOrigins: string[];
  try {
    allowOrigins = parseAllowedOrigins(flags.allowArtifactOrigin ?? [], process.env[ALLOW_ORIGIN_ENV]);
  } catch (err) {
    throw new CascadeError('invalid-arguments', `--allow-artifact-origin: ${(err as Error).message}`);
  }
  const allowHttp = Boolean(flags.allowHttpArtifacts) || /^(1|true|yes)$/i.test(process.env['CASCADE_ALLOW_HTTP_ARTIFACTS'] ?? '');
  return { allowOrigins, allowHttp };
}

export function allowHttpArtifactsOption(): Option {
  return new Option('--allow-http-artifacts', 'accept plain http: artifact URLs for every App (labs; env CASCADE_ALLOW_HTTP_ARTIFACTS=true)');
}

/** An http(s) URL, e.g. of a region or the hub. */
export function urlFlag(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`"${value}" is not a URL; use e.g. http://127.0.0.1:8080 or https://region.example:8080.`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`"${value}" is not an http(s) URL; use e.g. https://region.example:8080.`);
  return value;
}
