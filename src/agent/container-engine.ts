import { execFile } from 'node:child_process';
import { basename, dirname } from 'node:path';
import { CascadeError } from '../core/errors.js';

/**
 * A container engine driven through its command line, podman or Docker, with argument arrays and no
 * shell: nothing from the fleet repository is ever parsed by a shell, and options cannot be smuggled in
 * through a value (every value is one argument, validated before it gets here).
 *
 * Why the CLI and not the Docker Engine API: podman serves that API only while `podman system service`
 * runs, one more daemon on the device; the CLI reads the engine's own configuration (containers.conf,
 * registries.conf, Docker's config) exactly as an operator's `podman run` does, so a device that needs
 * `runtime = "runc"` or lowered ulimits is configured once for both; and it adds no npm dependency.
 */

export const ENGINE_FAILED = 'container-engine-failed';
export const ENGINE_MISSING = 'container-engine-missing';

export type EngineKind = 'podman' | 'docker';

/** A command of the engine failed; `message` carries the engine's own words. */
export class ContainerEngineError extends CascadeError {
  constructor(
    readonly args: readonly string[],
    readonly stderr: string,
    /** Exit code of the engine (for `exec`: of the command in the container); null when it did not exit. */
    readonly exitCode: number | null,
    message: string,
  ) {
    super(ENGINE_FAILED, message);
    this.name = 'ContainerEngineError';
  }
}

export interface EngineResult {
  stdout: string;
  stderr: string;
}

export interface ContainerEngineOptions {
  /** `podman`, `docker`, a path to either, or `auto` (podman, then docker, from PATH). */
  command?: string;
  /** Docker config.json-format credentials for private registries (`--registry-auth`). */
  authFile?: string;
  /** Limit of each command other than pull. */
  commandTimeoutMs?: number;
  pullTimeoutMs?: number;
  /** Called after each engine command with its arguments, duration and exit (for debug logs). */
  onCommand?: (args: readonly string[], ms: number, ok: boolean) => void;
}

/** What the agent needs to know of a container (both engines answer `container inspect` with these fields). */
export interface ContainerInfo {
  id: string;
  name: string;
  status: string;
  running: boolean;
  exitCode: number | null;
  error: string;
  labels: Record<string, string>;
  /** The image's own HEALTHCHECK test, if any (`["NONE"]` and empty count as none). */
  healthcheck: string[] | null;
  /** Docker: the daemon's health status of a container with a HEALTHCHECK. */
  health: { status: string; lastOutput: string } | null;
  startedAt: string;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
const DEFAULT_PULL_TIMEOUT_MS = 10 * 60_000;
const MAX_BUFFER = 16 * 1024 * 1024;

/** The last meaningful lines an engine wrote, without its `Error: ` prefix. */
export function engineWords(stderr: string, fallback: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const text = lines.slice(-4).join('; ').replace(/^Error( response from daemon)?: /, '');
  return text.length > 600 ? `${text.slice(0, 597)}...` : text || fallback;
}

export class ContainerEngine {
  private readonly commandTimeoutMs: number;
  private readonly pullTimeoutMs: number;
  private readonly globalArgs: string[];
  private readonly pullArgs: string[];
  private readonly onCommand: ContainerEngineOptions['onCommand'];

  private constructor(
    readonly command: string,
    readonly kind: EngineKind,
    readonly version: string,
    opts: ContainerEngineOptions,
  ) {
    this.commandTimeoutMs = opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.pullTimeoutMs = opts.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
    this.globalArgs = [];
    this.pullArgs = [];
    this.onCommand = opts.onCommand;
    if (opts.authFile) {
      if (kind === 'podman') {
        this.pullArgs.push('--authfile', opts.authFile);
      } else {
        // Docker reads credentials from <dir>/config.json only.
        if (basename(opts.authFile) !== 'config.json') {
          throw new CascadeError('registry-auth-invalid', `--registry-auth ${opts.authFile}: Docker reads credentials from a file named config.json; name it so (Docker is given its folder)`);
        }
        this.globalArgs.push('--config', dirname(opts.authFile));
      }
    }
  }

  /** Finds the engine (`--container-engine`) and asks its version; throws ENGINE_MISSING with what to do. */
  static async open(opts: ContainerEngineOptions = {}): Promise<ContainerEngine> {
    const wanted = opts.command ?? 'auto';
    const candidates = wanted === 'auto' ? ['podman', 'docker'] : [wanted];
    const problems: string[] = [];
    for (const command of candidates) {
      try {
        const { stdout } = await execute(command, ['--version'], { timeoutMs: 15_000 });
        const version = stdout.trim();
        const kind: EngineKind = /podman/i.test(version) ? 'podman' : /docker/i.test(version) ? 'docker' : /podman/.test(basename(command)) ? 'podman' : 'docker';
        return new ContainerEngine(command, kind, version, opts);
      } catch (err) {
        problems.push(`${command}: ${(err as Error).message}`);
      }
    }
    throw new CascadeError(
      ENGINE_MISSING,
      wanted === 'auto'
        ? `no container engine found (${problems.join('; ')}); install podman or Docker, or name one with --container-engine`
        : `--container-engine ${wanted} cannot run: ${problems.join('; ')}`,
    );
  }

  /** Runs the engine; a non-zero exit throws a ContainerEngineError carrying the engine's words. */
  async run(args: string[], opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<EngineResult> {
    const full = [...this.globalArgs, ...args];
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    const started = performance.now();
    try {
      const result = await execute(this.command, full, { timeoutMs, signal: opts.signal });
      this.onCommand?.(args, performance.now() - started, true);
      return result;
    } catch (err) {
      this.onCommand?.(args, performance.now() - started, false);
      if (opts.signal?.aborted) throw err;
      const e = err as ExecError;
      const stderr = (e.stderr ?? '').trim();
      const why = e.code === 'ENOENT' ? `${this.command} is not installed` : e.killed ? `no answer within ${Math.round(timeoutMs / 1000)} s` : engineWords(stderr, e.message);
      throw new ContainerEngineError(full, stderr, typeof e.code === 'number' ? e.code : null, `${basename(this.command)} ${args[0] ?? ''} failed: ${why}`);
    }
  }

  async imageExists(ref: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.run(['image', 'inspect', '--format', '{{.Id}}', ref], { signal });
      return true;
    } catch (err) {
      if (signal?.aborted) throw err;
      return false;
    }
  }

  async pull(ref: string, signal?: AbortSignal): Promise<void> {
    await this.run(['pull', ...(this.kind === 'podman' ? ['--quiet'] : []), ...this.pullArgs, ref], { timeoutMs: this.pullTimeoutMs, signal });
  }

  /** `repository@sha256:...` names of a local image; null when there is no such image. */
  async repoDigests(ref: string, signal?: AbortSignal): Promise<string[] | null> {
    let stdout: string;
    try {
      ({ stdout } = await this.run(['image', 'inspect', '--format', '{{json .RepoDigests}}', ref], { signal }));
    } catch (err) {
      if (signal?.aborted) throw err;
      if (err instanceof ContainerEngineError && /image not known|no such (image|object)|not found/i.test(err.stderr)) return null;
      throw err;
    }
    const parsed = JSON.parse(stdout.trim() || '[]') as unknown;
    return Array.isArray(parsed) ? parsed.filter((d): d is string => typeof d === 'string') : [];
  }

  /** Digests of the local images of `repository` (image id when it has none). */
  async imagesOf(repository: string, signal?: AbortSignal): Promise<Array<{ digest: string; id: string }>> {
    const args = ['images', '--no-trunc', '--digests', '--format', '{{.Repository}} {{.Digest}} {{.ID}}', repository];
    let stdout = '';
    // podman lists image ids, then reads each: an image removed in between (an operator's `podman image
    // prune` on the device) fails the whole listing with "image not known". A new listing is consistent.
    for (let attempt = 1; ; attempt++) {
      try {
        ({ stdout } = await this.run(args, { signal }));
        break;
      } catch (err) {
        if (signal?.aborted || attempt >= 5 || !(err instanceof ContainerEngineError && /image not known/i.test(err.stderr))) throw err;
      }
    }
    const images: Array<{ digest: string; id: string }> = [];
    for (const line of stdout.split('\n')) {
      const [repo, digest, id] = line.trim().split(/\s+/);
      if (repo === repository && digest && id) images.push({ digest, id });
    }
    return images;
  }

  async removeImage(ref: string): Promise<void> {
    await this.run(['rmi', ref]);
  }

  /** The container named `name`, or null when there is none. */
  async inspect(name: string, signal?: AbortSignal): Promise<ContainerInfo | null> {
    let stdout: string;
    try {
      ({ stdout } = await this.run(['container', 'inspect', name], { signal }));
    } catch (err) {
      if (signal?.aborted) throw err;
      if (err instanceof ContainerEngineError && /no such (container|object)|not found|no container with/i.test(err.stderr)) return null;
      throw err;
    }
    const [raw] = JSON.parse(stdout) as RawContainer[];
    if (!raw) return null;
    const test = raw.Config?.Healthcheck?.Test ?? null;
    const health = raw.State?.Health ?? null;
    const log = health?.Log ?? [];
    return {
      id: raw.Id ?? '',
      name: (raw.Name ?? name).replace(/^\//, ''),
      status: raw.State?.Status ?? 'unknown',
      running: raw.State?.Running === true,
      exitCode: typeof raw.State?.ExitCode === 'number' ? raw.State.ExitCode : null,
      error: raw.State?.Error ?? '',
      labels: raw.Config?.Labels ?? {},
      healthcheck: test && test.length > 0 && test[0] !== 'NONE' ? test : null,
      health: health?.Status ? { status: health.Status, lastOutput: (log[log.length - 1]?.Output ?? '').trim() } : null,
      startedAt: raw.State?.StartedAt ?? '',
    };
  }

  /** Names of the containers carrying every one of `labels` (only the running ones with `runningOnly`). */
  async containersWith(labels: Record<string, string>, signal?: AbortSignal, runningOnly = false): Promise<string[]> {
    const filters = Object.entries(labels).flatMap(([key, value]) => ['--filter', `label=${key}=${value}`]);
    const { stdout } = await this.run(['ps', ...(runningOnly ? [] : ['--all']), ...filters, '--format', '{{.Names}}'], { signal });
    return stdout
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '');
  }

  async create(args: string[], signal?: AbortSignal): Promise<void> {
    await this.run(['create', ...args], { signal });
  }

  /** Creates and starts a container in one command (`run --detach`). */
  async runDetached(args: string[], signal?: AbortSignal): Promise<void> {
    await this.run(['run', '--detach', ...args], { signal });
  }

  async start(name: string, signal?: AbortSignal): Promise<void> {
    await this.run(['start', name], { signal });
  }

  /** Stops the container: SIGTERM, then SIGKILL after `graceSeconds` (null: the container's own stop timeout). */
  async stop(name: string, graceSeconds: number | null, signal?: AbortSignal): Promise<void> {
    const time = graceSeconds === null ? [] : ['--time', String(graceSeconds)];
    await this.run(['stop', ...time, name], { timeoutMs: this.commandTimeoutMs + (graceSeconds ?? 3600) * 1000, signal });
  }

  /** Removes the container at once (killed if it runs); no error when it is gone already. */
  async remove(name: string): Promise<void> {
    try {
      // podman's rm --force would give the container its stop timeout first; Docker's kills at once.
      await this.run(['rm', '--force', ...(this.kind === 'podman' ? ['--time', '0'] : []), name]);
    } catch (err) {
      if (err instanceof ContainerEngineError && /no such (container|object)|not found|no container with/i.test(err.stderr)) return;
      throw err;
    }
  }

  /** Runs `argv` inside the container; resolves with its exit code and output (never throws on a non-zero exit). */
  async exec(name: string, argv: string[], timeoutMs: number, signal?: AbortSignal): Promise<{ exitCode: number | null; output: string; timedOut: boolean }> {
    try {
      const { stdout, stderr } = await this.run(['exec', name, ...argv], { timeoutMs, signal });
      return { exitCode: 0, output: `${stdout}${stderr}`.trim(), timedOut: false };
    } catch (err) {
      if (!(err instanceof ContainerEngineError)) throw err;
      return { exitCode: err.exitCode, output: err.stderr, timedOut: err.exitCode === null };
    }
  }

  /** podman: runs the image's HEALTHCHECK once; exit 0 is healthy. */
  async runHealthcheck(name: string, timeoutMs: number, signal?: AbortSignal): Promise<{ healthy: boolean; output: string }> {
    try {
      const { stdout } = await this.run(['healthcheck', 'run', name], { timeoutMs, signal });
      return { healthy: true, output: stdout.trim() };
    } catch (err) {
      if (!(err instanceof ContainerEngineError)) throw err;
      return { healthy: false, output: engineWords(err.stderr, err.message) };
    }
  }

  /** The last lines a container wrote, for failure messages; never throws. */
  async logs(name: string, lines = 5): Promise<string> {
    try {
      const { stdout, stderr } = await this.run(['logs', '--tail', String(lines), name], { timeoutMs: 15_000 });
      return `${stdout}${stderr}`.trim();
    } catch {
      return '';
    }
  }
}

interface RawContainer {
  Id?: string;
  Name?: string;
  State?: {
    Status?: string;
    Running?: boolean;
    ExitCode?: number;
    Error?: string;
    StartedAt?: string;
    Health?: { Status?: string; Log?: Array<{ Output?: string }> };
  };
  Config?: { Labels?: Record<string, string> | null; Healthcheck?: { Test?: string[] } | null };
}

type ExecError = Error & { code?: string | number; stderr?: string; killed?: boolean };

function execute(command: string, args: string[], opts: { timeoutMs: number; signal?: AbortSignal }): Promise<EngineResult> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: opts.timeoutMs, maxBuffer: MAX_BUFFER, signal: opts.signal, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) {
        Object.assign(err, { stderr: String(stderr) });
        reject(err);
        return;
      }
      resolve({ stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
