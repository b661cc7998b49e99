import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));

export interface RegionProcess {
  url: string;
  child: ChildProcess;
  /** Every log line the region wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `cascade region` as a real process and waits until it listens. */
export async function startRegionProcess(args: string[], env: Record<string, string> = {}): Promise<RegionProcess> {
  const child = spawn(process.execPath, [BIN, 'region', '--listen', '127.0.0.1:0', ...args], {
    env: { ...process.env, CASCADE_LOG_FORMAT: 'json', CASCADE_LOG_LEVEL: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let buffer = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      stderr += chunk.toString();
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (typeof entry['url'] === 'string' && String(entry['msg']).includes('listening')) resolve(entry['url'] as string);
        } catch {
          // not JSON: a CLI error line; kept in stderr for the rejection message
        }
      }
    });
    void exited.then((code) => reject(new Error(`region exited with ${code} before listening:\n${stderr}`)));
  });
  return {
    url,
    child,
    logs,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Polls until `check` returns a value other than undefined, or fails after `timeoutMs` with `describe()`. */
export async function waitFor<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs: number, describe: () => string | Promise<string>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
