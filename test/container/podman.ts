import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/**
 * Podman as it runs on these machines (see the team's containers notes): runc, because crun
 * fails on hybrid cgroups, and lowered ulimits, because runc may not raise them here.
 */
export const RUNTIME_FLAGS = ['--runtime=runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

export class PodmanError extends Error {
  constructor(
    readonly args: string[],
    readonly stderr: string,
    /** The exit code of podman (for `podman exec`/`run`: of the command), or null when it did not exit. */
    readonly exitCode: number | null,
    message: string,
  ) {
    super(message);
  }
}

/** Runs `podman ARGS` and returns its trimmed stdout; a failure throws a PodmanError carrying podman's stderr. */
export async function podman(args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync('podman', args, {
      timeout: options.timeoutMs ?? 60_000,
      maxBuffer: 64 * 1024 * 1024,
      env: options.env ?? process.env,
    });
    return stdout.trim();
  } catch (err) {
    const e = err as Omit<NodeJS.ErrnoException, 'code'> & { code?: string | number; stderr?: string; killed?: boolean };
    const stderr = (e.stderr ?? '').trim();
    const why = e.code === 'ENOENT' ? 'podman is not installed' : e.killed ? 'timed out' : stderr.split('\n').slice(-15).join('\n') || e.message;
    throw new PodmanError(args, stderr, typeof e.code === 'number' ? e.code : null, `podman ${args.join(' ')} failed: ${why}`);
  }
}

export async function imageExists(tag: string): Promise<boolean> {
  try {
    await podman(['image', 'exists', tag]);
    return true;
  } catch {
    return false;
  }
}

/** The last lines a container wrote (stdout and stderr), for failure messages; never throws. */
export async function containerLogs(name: string, lines = 60): Promise<string> {
  try {
    const { stdout, stderr } = await execFileAsync('podman', ['logs', '--tail', String(lines), name], { timeout: 15_000, maxBuffer: 16 * 1024 * 1024 });
    return `${stdout}${stderr}`.trim();
  } catch (err) {
    return `(no logs of ${name}: ${(err as Error).message})`;
  }
}

/** Removes a container at once (SIGKILL, no grace period) whether it runs or not; never throws. */
export async function removeContainer(name: string): Promise<void> {
  try {
    await podman(['rm', '--force', '--time', '0', name], { timeoutMs: 30_000 });
  } catch {
    // already gone, or podman itself is gone: nothing left to clean up
  }
}
