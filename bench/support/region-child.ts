import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/support/free-port.js';
import { waitForPort } from '../../test/support/mosquitto.js';

export const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));

export interface RegionChild {
  url: string;
  child: ChildProcess;
  stderr(): string;
  stop(): Promise<void>;
}

/** `cascade region` as its own process on a free port; resolves once it listens. */
export async function startRegionChild(args: string[]): Promise<RegionChild> {
  const port = await freePort();
  // e.g. CASCADE_BENCH_REGION_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' to profile the region alone.
  const nodeArgs = (process.env['CASCADE_BENCH_REGION_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, BIN, 'region', '--listen', `127.0.0.1:${port}`, ...args], {
    env: { ...process.env, CASCADE_LOG_FORMAT: 'json', CASCADE_LOG_LEVEL: process.env['CASCADE_BENCH_REGION_LOG_LEVEL'] ?? 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const logFile = process.env['CASCADE_BENCH_REGION_LOG'];
  if (logFile) writeFileSync(logFile, '');
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-20_000);
    if (logFile) appendFileSync(logFile, chunk);
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) => child.once('exit', (code) => ((exitCode = code), resolve())));
  await waitForPort(port, 60_000, () => (exitCode !== undefined ? `region exited with ${exitCode}:\n${stderr}` : null));
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    stderr: () => stderr,
    async stop() {
      if (exitCode === undefined) child.kill('SIGTERM');
      await exited;
    },
  };
}

export function memoryMb(pid: number, field: 'VmHWM' | 'VmRSS' | 'RssAnon' | 'RssFile'): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

/** CPU seconds (user + system) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The value of a sample in a Prometheus text exposition (0 when absent). */
export function metricValue(text: string, name: string, labels: string | string[] = ''): number {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = new RegExp(`^${escaped}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm');
  const wanted = (Array.isArray(labels) ? labels : [labels]).filter(Boolean);
  for (const m of text.matchAll(match)) {
    if (wanted.every((label) => (m[1] ?? '').includes(label))) return Number(m[2]);
  }
  return 0;
}

export async function until<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: () => Promise<string> | string): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${await what()}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
