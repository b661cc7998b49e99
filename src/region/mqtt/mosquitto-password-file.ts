import { pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, chownSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { CascadeError } from '../../core/errors.js';
import type { DeviceId } from '../../core/types.js';

/**
 * Per-device MQTT credentials in a Mosquitto password file: username = device id, password = the
 * device token issued at enrolment. The broker reads the file (`password_file`) and, with an
 * `acl_file` of `pattern` lines, lets each username read and write only its own topics.
 *
 * The region owns one block of the file, between marker lines; every other line belongs to the
 * operator (the region's own user, admins) and is kept as it is. A device never gets an entry
 * whose username already has one outside the block, so no device can take over such an account.
 */

/** What Mosquitto 2.0's mosquitto_passwd writes: `$7$` = PBKDF2-HMAC-SHA512, 101 rounds, 12-byte salt. */
const HASH_ITERATIONS = 101;
/**
 * Rounds for device tokens. Key stretching only protects secrets people choose; a device token is
 * 32 random bytes, beyond any guessing at one round or a thousand (the region's own store keeps a
 * single SHA-256 of it). The broker hashes every connected client's password again each time it
 * re-reads the file: at 10,000 devices one round costs it ~0.1 s per reload, 101 rounds ~1 s.
 */
export const DEVICE_TOKEN_HASH_ITERATIONS = 1;
const SALT_BYTES = 12;
const HASH_BYTES = 64;

/** A password hash in the `$7$<iterations>$<salt>$<hash>` format of mosquitto_passwd (Mosquitto 2.0). */
export function mosquittoPasswordHash(password: string, salt: Buffer = randomBytes(SALT_BYTES), iterations = HASH_ITERATIONS): string {
  const hash = pbkdf2Sync(password, salt, iterations, HASH_BYTES, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Whether `password` matches a `$7$` hash (what the broker checks on CONNECT). */
export function verifyMosquittoPassword(password: string, encoded: string): boolean {
  const parts = encoded.split('$');
  if (parts.length !== 5 || parts[1] !== '7') return false;
  const iterations = Number(parts[2]);
  const salt = Buffer.from(parts[3]!, 'base64');
  const expected = Buffer.from(parts[4]!, 'base64');
  if (!Number.isInteger(iterations) || iterations < 1 || expected.length === 0) return false;
  const actual = pbkdf2Sync(password, salt, iterations, expected.length, 'sha512');
  return timingSafeEqual(actual, expected);
}

/** Why a device id cannot be a username in a Mosquitto password file, or null when it can. */
export function passwordFileUsernameProblem(deviceId: DeviceId): string | null {
  // Mosquitto splits each line at the first ':', so a username cannot contain one.
  if (deviceId.includes(':')) return "contains ':', which a Mosquitto password file cannot hold in a username";
  return null;
}

/** Where the region keeps device credentials the broker checks. */
export interface DeviceCredentialStore {
  /** Gives the device this password (its new token), replacing the old one. */
  setDevicePassword(deviceId: DeviceId, password: string): void;
  removeDevice(deviceId: DeviceId): void;
  /** Devices that have an entry now. */
  devices(): DeviceId[];
  /** Writes pending changes and tells the broker, now. */
  flush(): void;
  close(): void;
}

export interface MosquittoPasswordFileOptions {
  path: string;
  /** Names the block of this region in the file. */
  region: string;
  /** Tells the broker to re-read the file (e.g. SIGHUP to its pid); called after every write. */
  reload: () => void;
  log: Logger;
  /**
   * Changes within this window are written together, with one reload (enrolment comes in bursts).
   * The window grows with the file (see batchWindowMs): each write makes every broker re-read it.
   */
  batchMs?: number;
}

const DEFAULT_BATCH_MS = 500;
/** Devices in the file per millisecond of batch window: 10,000 devices 500 ms, 50,000 devices 2 s. */
const DEVICES_PER_WINDOW_MS = 25;

/**
 * How long changes wait to be written together. Each write makes every broker (a region broker and
 * its bridged site brokers) re-read the whole file and check its clients again: at 50,000 devices,
 * two reloads a second kept four brokers busy. So the window grows with the file: the configured
 * window (500 ms) up to 12,500 devices, then 1 ms per 25 devices (2 s at 50,000). A device enrolled
 * meanwhile retries its connection until its entry is in.
 */
export function batchWindowMs(configuredMs: number, devicesInFile: number): number {
  return Math.max(configuredMs, Math.round(devicesInFile / DEVICES_PER_WINDOW_MS));
}

function beginMarker(region: string): string {
  return `# BEGIN cascade devices of region ${region}: written by \`cascade region\`; edits inside this block are lost`;
}
function endMarker(region: string): string {
  return `# END cascade devices of region ${region}`;
}

interface ParsedFile {
  /** Lines before the block (or the whole file when there is no block yet). */
  before: string[];
  after: string[];
  devices: Map<DeviceId, string>;
}

function parseFile(text: string, region: string, path: string): ParsedFile {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const begin = lines.indexOf(beginMarker(region));
  const end = lines.indexOf(endMarker(region));
  if (begin < 0 && end < 0) return { before: lines, after: [], devices: new Map() };
  if (begin < 0 || end < begin) {
    throw new CascadeError('mqtt-password-file-invalid', `${path}: the block of region ${region} is broken (its BEGIN and END marker lines are missing or out of order); remove both marker lines and restart the region`);
  }
  const devices = new Map<DeviceId, string>();
  for (let index = begin + 1; index < end; index++) {
    const line = lines[index]!;
    const colon = line.indexOf(':');
    if (line === '' || line.startsWith('#') || colon <= 0) continue;
    devices.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return { before: lines.slice(0, begin), after: lines.slice(end + 1), devices };
}

/**
 * The usernames in `lines`, each a string of its own. V8 makes a slice of 13 characters or more a view
 * into the string it was cut from, and the lines are cut from the whole file: one kept operator name
 * ("bench-baseline") kept the file's text alive between writes, 117 bytes per device (6 MB at 50,000).
 */
function usernamesOf(lines: string[]): Set<string> {
  const names = new Set<string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (line.startsWith('#') || colon <= 0) continue;
    names.add(Buffer.from(line.slice(0, colon), 'utf8').toString('utf8'));
  }
  return names;
}

/**
 * The region's block of a Mosquitto password file. Each write replaces the whole file atomically
 * (temp file + rename, keeping its mode and owner), re-reading it first so the operator's lines and
 * edits made while the region runs are kept. Only changes not written yet are held in memory: the
 * entries themselves live in the file (at 50,000 devices, 8 MB of hashes the region never reads).
 */
export class MosquittoPasswordFile implements DeviceCredentialStore {
  /** Changes since the last write: a new hash, or null for a removal. */
  private pending = new Map<DeviceId, string | null>();
  /** Usernames outside the region's block when the file was last read. */
  private reserved: Set<string>;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Devices in the block at the last read of the file. */
  private size = 0;
  /** Writes so far, for logs and tests. */
  writes = 0;

  private constructor(
    private readonly opts: MosquittoPasswordFileOptions,
    parsed: ParsedFile,
  ) {
    this.reserved = usernamesOf([...parsed.before, ...parsed.after]);
    this.size = parsed.devices.size;
  }

  /** Opens the file (it must exist: the broker's config points at it) and checks the region's block. */
  static open(opts: MosquittoPasswordFileOptions): MosquittoPasswordFile {
    return new MosquittoPasswordFile(opts, parseFile(MosquittoPasswordFile.read(opts.path), opts.region, opts.path));
  }

  private static read(path: string): string {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new CascadeError(
        'mqtt-password-file-unreadable',
        `cannot read the MQTT password file ${path} (--mqtt-device-passwords): ${(err as Error).message}; create it (it may be empty) and make it writable by the region and readable by the broker`,
      );
    }
  }

  /** The devices that have an entry, as the file holds them with the changes not written yet. */
  devices(): DeviceId[] {
    const { path, region } = this.opts;
    const entries = parseFile(MosquittoPasswordFile.read(path), region, path).devices;
    for (const [deviceId, hash] of this.pending) {
      if (hash === null) entries.delete(deviceId);
      else entries.set(deviceId, hash);
    }
    return [...entries.keys()].filter((deviceId) => !this.reserved.has(deviceId));
  }

  setDevicePassword(deviceId: DeviceId, password: string): void {
    const problem = passwordFileUsernameProblem(deviceId);
    if (problem) {
      this.opts.log.warn({ deviceId }, `device ${deviceId} gets no MQTT credentials: its id ${problem}; it can use HTTP only`);
      return;
    }
    if (this.reserved.has(deviceId)) {
      this.refuseReserved(deviceId);
      return;
    }
    this.pending.set(deviceId, mosquittoPasswordHash(password, undefined, DEVICE_TOKEN_HASH_ITERATIONS));
    this.schedule();
  }

  removeDevice(deviceId: DeviceId): void {
    this.pending.set(deviceId, null);
    this.schedule();
  }

  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.pending.size === 0) return;
    const changes = this.pending;
    this.pending = new Map();
    try {
      if (!this.write(changes)) return;
    } catch (err) {
      // Kept for the next write; newer changes of the same device win.
      for (const [deviceId, hash] of changes) if (!this.pending.has(deviceId)) this.pending.set(deviceId, hash);
      throw err;
    }
    this.opts.reload();
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      try {
        this.flush();
      } catch (err) {
        // Kept and tried again after another window: the last enrolment of a burst must not wait for a next one.
        this.opts.log.error({ err, path: this.opts.path }, 'cannot write the MQTT password file; trying again shortly');
        this.schedule();
      }
    }, batchWindowMs(this.opts.batchMs ?? DEFAULT_BATCH_MS, this.size));
  }

  private refuseReserved(deviceId: DeviceId): void {
    this.opts.log.error(
      { deviceId, path: this.opts.path },
      `device ${deviceId} gets no MQTT credentials: the password file ${this.opts.path} has a user of that name outside the region's block (an operator account); it can use HTTP only`,
    );
  }

  /** Writes the file with `changes` applied; false when they changed nothing in it. */
  private write(changes: Map<DeviceId, string | null>): boolean {
    const { path, region, log } = this.opts;
    const current = parseFile(MosquittoPasswordFile.read(path), region, path);
    this.reserved = usernamesOf([...current.before, ...current.after]);
    const entries = current.devices;
    this.size = entries.size;
    let changed = false;
    for (const [deviceId, hash] of changes) {
      if (hash === null) changed = entries.delete(deviceId) || changed;
      else if (entries.get(deviceId) !== hash) {
        entries.set(deviceId, hash);
        changed = true;
      }
    }
    if (!changed) return false;
    const block: string[] = [];
    // The block stays sorted: it was at the last write, so this sort is nearly linear.
    for (const [deviceId, hash] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (this.reserved.has(deviceId)) {
        this.refuseReserved(deviceId);
        continue;
      }
      block.push(`${deviceId}:${hash}`);
    }
    const text = [...current.before, beginMarker(region), ...block, endMarker(region), ...current.after].join('\n') + '\n';
    const temp = `${path}.${process.pid}.tmp`;
    const stat = statSync(path);
    writeFileSync(temp, text, { mode: stat.mode & 0o777 });
    chmodSync(temp, stat.mode & 0o777);
    try {
      chownSync(temp, stat.uid, stat.gid);
    } catch {
      // Only root may give a file away; the mode (e.g. group-readable for the broker) is kept either way.
    }
    renameSync(temp, path);
    this.size = block.length;
    this.writes++;
    log.debug({ path, devices: block.length }, 'MQTT password file written');
    return true;
  }
}

/** A reload that sends SIGHUP to the broker whose pid is in `pidFile` (Mosquitto's `pid_file`). */
export function signalReload(pidFile: string, log: Logger): () => void {
  // Several brokers may share the file (site brokers bridged to a region broker): a comma-separated list.
  const pidFiles = pidFile.split(',').map((file) => file.trim()).filter((file) => file !== '');
  return () => {
    for (const file of pidFiles) signalOne(file, log);
  };
}

function signalOne(pidFile: string, log: Logger): void {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch (err) {
    log.error({ pidFile, err: (err as Error).message }, 'cannot read the broker pid file (--mqtt-broker-pid-file); the broker did not re-read the password file');
    return;
  }
  try {
    if (!Number.isInteger(pid) || pid <= 1) throw new Error(`'${pid}' is not a process id`);
    process.kill(pid, 'SIGHUP');
  } catch (err) {
    log.error({ pidFile, pid, err: (err as Error).message }, 'cannot signal the broker to re-read the password file');
  }
}
