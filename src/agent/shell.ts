import { spawn } from 'node:child_process';

export interface ShellResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Last part of stdout and stderr together, for error messages. */
  outputTail: string;
}

const TAIL_BYTES = 2048;

/**
 * Runs `command` with /bin/sh in its own process group, so a timeout or an abort kills the whole
 * tree (an install script's children included).
 */
export function runShell(command: string, opts: { cwd?: string; env?: Record<string, string>; timeoutMs: number; signal?: AbortSignal }): Promise<ShellResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let tail = '';
    const collect = (chunk: Buffer) => {
      tail = (tail + chunk.toString('utf8')).slice(-TAIL_BYTES);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let timedOut = false;
    const killTree = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killTree();
    }, opts.timeoutMs);
    const onAbort = () => killTree();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (opts.signal?.aborted) {
        reject(opts.signal.reason);
        return;
      }
      resolve({ exitCode, signal, timedOut, outputTail: tail.trim() });
    });
  });
}

/** Says how a command ended, for a report: "exited 3: <output>", "timed out after 10000 ms". */
export function describeShellFailure(result: ShellResult, timeoutMs: number): string {
  const how = result.timedOut
    ? `timed out after ${timeoutMs} ms`
    : result.exitCode !== null
      ? `exited ${result.exitCode}`
      : `was killed by ${result.signal}`;
  const output = result.outputTail.split('\n').slice(-5).join(' | ').slice(-400);
  return output ? `${how}: ${output}` : how;
}

/** A value as it should appear inside a shell command: bare when harmless, single-quoted otherwise. */
export function shellWord(value: string): string {
  if (/^[A-Za-z0-9._+:@%/=,-]+$/.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Substitutes `{version}` and `{artifact}` in a command from the fleet repository. */
export function renderCommand(template: string, values: { version: string; artifact?: string | null }): string {
  return template
    .replaceAll('{version}', shellWord(values.version))
    .replaceAll('{artifact}', values.artifact ? shellWord(values.artifact) : "''");
}
