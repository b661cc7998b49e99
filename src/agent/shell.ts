import type { PreparedCommand } from '../core/command-template.js';
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
 * Runs a prepared command (core/command-template.ts) in its own process group, so a timeout or an
 * abort kills the whole tree (an install script's children included). A list template runs
 * without a shell; a string template runs with /bin/sh -c and reads its values from the environment.
 */
export function runCommand(command: PreparedCommand, opts: { cwd?: string; env?: Record<string, string>; timeoutMs: number; signal?: AbortSignal }): Promise<ShellResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command.file, command.args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env, ...command.env },
      shell: false,
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
    let settled = false;
    child.on('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      // A program that cannot be started is a failed command (like sh's 127), not a crash of the agent.
      resolve({ exitCode: 127, signal: null, timedOut: false, outputTail: `cannot run ${command.file}: ${err.message}` });
    });
    child.on('close', (exitCode, signal) => {
      if (settled) return;
      settled = true;
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
