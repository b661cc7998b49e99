import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { delimiter, isAbsolute, join, relative } from 'node:path';
import { expect, it } from 'vitest';

/**
 * What a test file needs from the machine beyond `npm ci` (a browser, a container engine, a
 * broker, a system tool), checked once when the file is collected.
 *
 *     const missing = await requireTool(CHROMIUM);
 *     describe.skipIf(missing)('dashboard in Chromium', () => { ... });
 *
 * Where something is missing, `requireTool` prints one line, `<file> skipped: needs <what> (<how
 * to get it>)`, and returns that reason, so a fresh machine runs `npm ci && npm test` green. With
 * CASCADE_STRICT_SKIPS=1 (set by .ci/run, which installs everything) the same file also gets one
 * failing test that says what is missing: on CI a requirement that went away fails the run instead
 * of silently testing less. File-level hooks that start the missing part must return early when
 * `missing` is set, because in strict mode that failing test runs them.
 */

export interface Requirement {
  /** What the tests need, as the skip line says it: `chromium`, `a broker on 127.0.0.1:1883`. */
  name: string;
  /** How to get it: `apt-get install -y chromium, or set CASCADE_CHROMIUM`. */
  install: string;
  /** True when the requirement is met; false or a sentence saying what is wrong when it is not. */
  check: () => boolean | string | Promise<boolean | string>;
}

export const STRICT_ENV = 'CASCADE_STRICT_SKIPS';

export function strictSkips(): boolean {
  return process.env[STRICT_ENV] === '1';
}

/**
 * Checks every requirement; null when all are met, else the reason to skip (already printed). In
 * strict mode it also registers a failing test at the place of the call.
 */
export async function requireTool(...requirements: Requirement[]): Promise<string | null> {
  const unmet = await unmetOf(requirements);
  if (unmet.length === 0) return null;
  return reportMissing(`needs ${unmet.join(' and ')}`);
}

/**
 * For a file whose tests need different things: checks each named requirement and returns, per
 * name, null or the reason to skip what needs it. One line (or, in strict mode, one failing test)
 * names everything missing.
 *
 *     const missing = await requireEach({ ssh: SSH_KEYGEN, gpg: GPG });
 *     it.skipIf(missing.gpg)('accepts a commit signed by gpg', ...);
 */
export async function requireEach<K extends string>(requirements: Record<K, Requirement>): Promise<Record<K, string | null>> {
  const result = {} as Record<K, string | null>;
  const unmet: string[] = [];
  for (const key of Object.keys(requirements) as K[]) {
    const [why] = await unmetOf([requirements[key]]);
    result[key] = why === undefined ? null : `needs ${why}`;
    if (why !== undefined) unmet.push(why);
  }
  if (unmet.length > 0) reportMissing(`needs ${unmet.join(' and ')}`);
  return result;
}

async function unmetOf(requirements: Requirement[]): Promise<string[]> {
  const unmet: string[] = [];
  for (const requirement of requirements) {
    let result: boolean | string;
    try {
      result = await requirement.check();
    } catch (err) {
      result = (err as Error).message;
    }
    if (result === true) continue;
    const detail = typeof result === 'string' && result ? `: ${result}` : '';
    unmet.push(`${requirement.name} (${requirement.install})${detail}`);
  }
  return unmet;
}

/**
 * Prints the one skip line, or in strict mode registers the one failing test; returns the reason.
 * For a file that works out its own reason (e.g. the container tests' environment probe).
 */
export function reportMissing(reason: string, file = testFile()): string {
  if (strictSkips()) {
    it(`requirement: ${reason}`, () => {
      throw new Error(`${file} ${reason}; ${STRICT_ENV}=1 makes a missing requirement fail instead of skipping`);
    });
  } else {
    console.warn(`${file} skipped: ${reason}`);
  }
  return reason;
}

function testFile(): string {
  const path = expect.getState().testPath;
  return path ? relative(process.cwd(), path) : 'a test file';
}

/** The absolute path of `name` on PATH (or `name` itself when it is an executable path), else null. */
export function findExecutable(name: string): string | null {
  const candidates = isAbsolute(name) ? [name] : (process.env['PATH'] ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** A program that must be on PATH. */
export function executable(name: string, install: string): Requirement {
  return { name, install, check: () => findExecutable(name) !== null };
}

/** Whether something accepts TCP connections on host:port within `timeoutMs`. */
export function listening(port: number, host = '127.0.0.1', timeoutMs = 2_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

// --- the requirements of this suite ------------------------------------------------------------

/** Debian's chromium, driven by playwright-core (which never downloads a browser of its own). */
export const CHROMIUM_PATH = process.env['CASCADE_CHROMIUM'] ?? '/usr/bin/chromium';
export const CHROMIUM: Requirement = {
  name: `chromium at ${CHROMIUM_PATH}`,
  install: 'apt-get install -y chromium, or set CASCADE_CHROMIUM to a Chromium binary',
  check: () => existsSync(CHROMIUM_PATH),
};

export const MOSQUITTO_BIN = process.env['CASCADE_MOSQUITTO_BIN'] ?? 'mosquitto';
/** The broker binary; tests start private brokers with their own ports, users and ACLs. */
export const MOSQUITTO: Requirement = {
  name: 'the mosquitto binary',
  install: 'apt-get install -y mosquitto, or set CASCADE_MOSQUITTO_BIN',
  check: () =>
    new Promise((resolve) => {
      // `mosquitto -h` prints its usage and exits 3: that still means it runs.
      execFile(MOSQUITTO_BIN, ['-h'], (err) => resolve(!err || (err as { code?: unknown }).code === 3));
    }),
};

/** The machine's own broker, as an operator would run it next to a region. */
export const BROKER_1883: Requirement = {
  name: 'an MQTT broker on 127.0.0.1:1883',
  install: 'apt-get install -y mosquitto && mosquitto -d -p 1883; .ci/run starts one',
  check: () => listening(1883),
};

export const SSH_KEYGEN = executable('ssh-keygen', 'apt-get install -y openssh-client');
export const GPG = executable('gpg', 'apt-get install -y gnupg');
export const OPENSSL = executable('openssl', 'apt-get install -y openssl');
