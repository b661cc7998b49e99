import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mosquittoPasswordHash } from '../../src/region/mqtt/mosquitto-password-file.js';
import { freePort } from './free-port.js';
import { MOSQUITTO_BIN } from './requirements.js';

const execFileAsync = promisify(execFile);

export interface MosquittoOptions {
  /** Users written to the broker's password file before it starts (the operator part of the file). */
  users?: Record<string, string>;
  /** Content of the ACL file; none (everything allowed) when absent. */
  acl?: string;
  /** Let clients without a username connect (default: false when `users` is given, else true). */
  allowAnonymous?: boolean;
  /** Serve TLS instead of plain TCP, with these PEM files. */
  tls?: { certFile: string; keyFile: string };
  /** More mosquitto.conf lines, e.g. `max_queued_messages 100000`. */
  extraConfig?: string[];
  /** Open-file limit of the broker process (each client is a socket). */
  maxOpenFiles?: number;
}

/** A private Mosquitto for one test file: its own config, port, password file and ACL, in a temp dir. */
export interface Mosquitto {
  url: string;
  port: number;
  dir: string;
  passwordFile: string;
  aclFile: string;
  pidFile: string;
  child: ChildProcess;
  /** Everything the broker logged so far. */
  log(): string;
  /** SIGHUP: the broker re-reads its password and ACL files. */
  reload(): void;
  /** Stops the broker and starts it again on the same port with the same files (it keeps no messages). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export { MOSQUITTO_BIN };

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs: number, exited?: () => string | null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    const why = exited?.();
    if (why) throw new Error(why);
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Spawns `mosquitto -c <tmp>/mosquitto.conf` on a free port and waits until it listens. */
export async function startMosquitto(opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-mosquitto-'));
  // A broker started as root switches to the user `mosquitto`, which must be able to read these files.
  chmodSync(dir, 0o755);
  const port = await freePort();
  const passwordFile = join(dir, 'passwd');
  const aclFile = join(dir, 'acl');
  const pidFile = join(dir, 'mosquitto.pid');
  const users = opts.users ?? {};
  const hasUsers = opts.users !== undefined;
  const lines = [
    `listener ${port} 127.0.0.1`,
    `allow_anonymous ${opts.allowAnonymous ?? !hasUsers}`,
    'persistence false',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    'connection_messages true',
    // Device client ids are their usernames: nobody can take over another client's session.
    'use_username_as_clientid true',
    // The region takes every device's report on one connection: never drop a queued QoS 1 message,
    // and let thousands be in flight (the default of 20 ties throughput to the region's event loop).
    'max_queued_messages 1000000',
    'max_inflight_messages 0',
    // Run as whoever started the test (root in containers would otherwise switch to `mosquitto`).
    `user ${process.getuid?.() === 0 ? 'root' : (process.env['USER'] ?? 'mosquitto')}`,
  ];
  if (hasUsers) {
    writeFileSync(passwordFile, Object.entries(users).map(([user, password]) => `${user}:${mosquittoPasswordHash(password)}\n`).join(''), { mode: 0o644 });
    lines.push(`password_file ${passwordFile}`);
  }
  if (opts.acl !== undefined) {
    writeFileSync(aclFile, opts.acl, { mode: 0o644 });
    lines.push(`acl_file ${aclFile}`);
  }
  if (opts.tls) {
    lines.push(`certfile ${opts.tls.certFile}`, `keyfile ${opts.tls.keyFile}`);
  }
  lines.push(...(opts.extraConfig ?? []));
  const configFile = join(dir, 'mosquitto.conf');
  writeFileSync(configFile, `${lines.join('\n')}\n`, { mode: 0o644 });

  const command = opts.maxOpenFiles ? 'bash' : MOSQUITTO_BIN;
  // Raises the soft limit as far as asked, or to the hard limit when that is lower.
  const raise = `n=${opts.maxOpenFiles ?? 0}; h=$(ulimit -Hn); if [ "$h" != unlimited ] && [ "$h" -lt "$n" ]; then n=$h; fi; ulimit -n "$n"; exec "$0" -c "$1"`;
  const args = opts.maxOpenFiles ? ['-c', raise, MOSQUITTO_BIN, configFile] : ['-c', configFile];
  let output = '';

  /** Spawns the broker and waits until it listens; resolves with its process and a promise of its exit. */
  const launch = async (): Promise<{ child: ChildProcess; exited: Promise<void>; running: () => boolean }> => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    writeFileSync(pidFile, `${child.pid}\n`);
    child.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.length > 4_000_000) output = output.slice(-2_000_000);
    });
    let exitCode: number | null | undefined;
    const exited = new Promise<void>((resolve) => {
      child.once('exit', (code) => {
        exitCode = code;
        resolve();
      });
    });
    try {
      await waitForPort(port, 10_000, () => (exitCode !== undefined ? `mosquitto exited with ${exitCode} before listening:\n${output}` : null));
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    return { child, exited, running: () => exitCode === undefined };
  };

  let current: Awaited<ReturnType<typeof launch>>;
  try {
    current = await launch();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const halt = async () => {
    if (current.running()) current.child.kill('SIGTERM');
    await current.exited;
  };
  const broker: Mosquitto = {
    url: `${opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    port,
    dir,
    passwordFile,
    aclFile,
    pidFile,
    child: current.child,
    log: () => output,
    reload: () => {
      current.child.kill('SIGHUP');
    },
    async restart() {
      await halt();
      current = await launch();
      broker.child = current.child;
    },
    async stop() {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return broker;
}

/** A self-signed CA and a server certificate for 127.0.0.1 signed by it, made with openssl in `dir`. */
export async function makeTestCertificates(dir: string): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const certFile = join(dir, 'server.crt');
  const ext = join(dir, 'server.ext');
  const openssl = (args: string[]) => execFileAsync('openssl', args);
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', '/CN=Cascade Test CA']);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', '/CN=127.0.0.1']);
  writeFileSync(ext, 'subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n');
  await openssl(['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', certFile, '-days', '2', '-extfile', ext]);
  for (const file of [caFile, certFile, keyFile]) chmodSync(file, 0o644);
  return { caFile, certFile, keyFile };
}

/**
 * The bridge section of a site broker's mosquitto.conf (docs/mqtt.md shows the same). With `site`, the
 * bridge carries the site's topics under `cascade/<region>/sites/<site>/` at the region broker, so only
 * its own devices' desired states come down; without, every topic as it is (every desired state of the region).
 */
export function bridgeConfig(name: string, regionBrokerPort: number, user: { username: string; password: string }, region: string, site?: string): string[] {
  const mapped = site === undefined ? '' : ` cascade/${region}/ cascade/${region}/sites/${site}/`;
  const pattern = (kind: string) => (site === undefined ? `cascade/${region}/+/${kind}` : `+/${kind}`);
  return [
    `connection ${name}`,
    `address 127.0.0.1:${regionBrokerPort}`,
    `remote_username ${user.username}`,
    `remote_password ${user.password}`,
    `remote_clientid ${user.username}`,
    'cleansession false',
    'try_private true',
    'notifications false',
    'bridge_protocol_version mqttv311',
    `topic ${pattern('reported')} out 1${mapped}`,
    `topic ${pattern('status')} out 1${mapped}`,
    `topic ${pattern('desired')} in 1${mapped}`,
  ];
}
