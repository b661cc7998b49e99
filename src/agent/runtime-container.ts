import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import type { Logger } from 'pino';
import type { ContainerRuntime as ContainerSpec, HealthCheck, ImageArtifact } from '../core/app-spec.js';
import { containerPolicyRefusals } from '../core/container-policy.js';
import { parseDuration } from '../core/duration.js';
import { CascadeError } from '../core/errors.js';
import type { DesiredAppWire } from '../protocol/types.js';
import { sleep } from './abortable.js';
import type { InstalledApp, InstalledContainer } from './agent-state.js';
import { AppApplyError } from './apply-error.js';
import { checkHealthWithRetries } from './health-retries.js';
import { checkContainerPrefix } from './container-prefix.js';
import { ContainerEngine, ContainerEngineError, engineWords, type ContainerEngineOptions, type ContainerInfo } from './container-engine.js';
import type { AppTarget, DeviceRuntime } from './runtime.js';

/**
 * Runs container apps (`runtime: { type: container, ... }`) on podman or Docker.
 *
 * What it promises:
 * - An image is pulled by digest only (`repository@sha256:...` from the App's artifact); a tag is never
 *   trusted, and the pulled image must carry that digest, or the install fails and the running version
 *   is not touched.
 * - An update is a swap: the new version's image is pulled while the old container runs; then the old
 *   container is stopped (kept), the new one created and started, and the health check decides. On
 *   failure the new container is removed and the old one started again. The old container and image
 *   stay until the new version is healthy, so going back needs no download.
 * - Containers carry labels io.cascade.app / .version / .revision / .device / .digest: a restarted agent
 *   finds what runs and adopts it instead of recreating it; a container stopped or removed by hand is
 *   noticed (`drift`) and put back.
 * - What the Region does not allow (privileged, host paths outside its allow-list) is refused before anything
 *   is pulled. Values from git become single engine arguments, never shell text.
 * What it never does: run a shell, pull by tag, delete the image a rollback would need, touch containers
 * without its device label.
 */

export interface ContainerRuntimeOptions {
  /** This device's id: label io.cascade.device, so two agents on one engine never touch each other's containers. */
  deviceId: string;
  engine?: ContainerEngineOptions;
  /** Containers are named `<prefix>-<app>-<version>`; `cascade` by default. */
  namePrefix?: string;
  /** Pause between health check attempts. */
  healthIntervalMs?: number;
  /** With no health check at all: how long a new container must keep running to count as healthy. */
  settleMs?: number;
}

export const LABEL_APP = 'io.cascade.app';
export const LABEL_VERSION = 'io.cascade.version';
export const LABEL_REVISION = 'io.cascade.revision';
export const LABEL_DEVICE = 'io.cascade.device';
export const LABEL_DIGEST = 'io.cascade.digest';

const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** An image repository: optional registry host[:port], then lowercase path components. */
const REPOSITORY = /^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]{1,5})?(\/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$/;
const NAME_SAFE = /[^A-Za-z0-9_.-]/g;

/** `registry:5000/team/app:1.2` -> `registry:5000/team/app` (a tag, or a digest, is dropped). */
export function repositoryOf(image: string): string {
  const at = image.indexOf('@');
  const withoutDigest = at >= 0 ? image.slice(0, at) : image;
  const slash = withoutDigest.lastIndexOf('/');
  const colon = withoutDigest.lastIndexOf(':');
  return colon > slash ? withoutDigest.slice(0, colon) : withoutDigest;
}

/** `<prefix>-<app>-<version>`, with a hash when the version has characters a name cannot hold. */
export function containerName(prefix: string, app: string, version: string): string {
  const safe = version.replace(NAME_SAFE, '_').slice(0, 64);
  const exact = safe === version;
  return `${prefix}-${app.replace(NAME_SAFE, '_')}-${safe}${exact ? '' : `-${createHash('sha256').update(version).digest('hex').slice(0, 8)}`}`;
}

/** Splits a health check command into words: spaces separate, quotes group, backslash escapes. No shell. */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) current += text[++i];
      else current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < text.length) {
      current += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (quote) throw new CascadeError('health-check-invalid', `unclosed ${quote} in ${JSON.stringify(text)}`);
  if (inWord) words.push(current);
  return words;
}

/** Whole seconds of the spec's stopGracePeriod (rounded up), or `fallback`. */
export function stopSeconds(app: string, version: string, spec: ContainerSpec | undefined, fallback: number): number {
  if (!spec?.stopGracePeriod) return fallback;
  try {
    return Math.min(3600, Math.ceil(parseDuration(spec.stopGracePeriod) / 1000));
  } catch (err) {
    throw new AppApplyError('container-spec-invalid', `${app} ${version}: stopGracePeriod: ${(err as Error).message}; not installed`, { touchedPrevious: false });
  }
}

/** 256Mi, 512M, 1G, 1.5g, 1048576 -> bytes. */
export function memoryBytes(text: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)([kKmMgG]i?|[kKmMgG]B?|b)?$/.exec(text);
  if (!match) throw new CascadeError('container-spec-invalid', `resources.memory "${text}" is not a size such as 256Mi, 512M or 1G`);
  const unit = (match[2] ?? 'b').toLowerCase().replace('b', '');
  const factor = unit === '' ? 1 : 1024 ** ('kmg'.indexOf(unit[0]!) + 1);
  return Math.round(Number(match[1]) * factor);
}

function hasControl(text: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u001f\u007f]/.test(text);
}

/** A path as the device sees it: symbolic links resolved, so a link under an allowed folder cannot reach outside it. */
function resolveOnDevice(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * The engine arguments of `create` for one version of an app, from its run spec. Throws an
 * AppApplyError (running version untouched) when the spec is not allowed or not well formed; the
 * schema already checked its shape, this checks again because a device trusts no one.
 */
export function createArgs(
  app: string,
  version: string,
  spec: ContainerSpec,
  container: InstalledContainer,
  opts: { deviceId: string; engine: 'podman' | 'docker'; volumePrefix: string },
): string[] {
  const refuse = (code: string, why: string): never => {
    throw new AppApplyError(code, `${app} ${version}: ${why}; not installed`, { touchedPrevious: false });
  };
  const refusals = containerPolicyRefusals(spec, spec.regionPolicy ?? {}, resolveOnDevice);
  if (refusals.length > 0) refuse('container-not-allowed', refusals.join('; '));
  if (hasControl(version) || version.length > 256) refuse('container-spec-invalid', 'the version holds control characters or is too long for a label');

  const args = ['--name', container.name];
  const labels: Record<string, string> = {
    [LABEL_APP]: app,
    [LABEL_VERSION]: version,
    [LABEL_DEVICE]: opts.deviceId,
    [LABEL_DIGEST]: container.digest,
  };
  if (container.revision && !hasControl(container.revision)) labels[LABEL_REVISION] = container.revision;
  for (const [key, value] of Object.entries(labels)) args.push('--label', `${key}=${value}`);
  args.push(`--restart=${spec.restart ?? 'always'}`);
  for (const [name, value] of Object.entries(spec.env ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) refuse('container-spec-invalid', `env name ${JSON.stringify(name)} is not a variable name`);
    if (value.includes('\u0000')) refuse('container-spec-invalid', `env ${name} holds a NUL character`);
    args.push('--env', `${name}=${value}`);
  }
  for (const port of spec.ports ?? []) {
    const ok = (n: unknown) => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535;
    if (!ok(port.container) || (port.host !== undefined && !ok(port.host))) refuse('container-spec-invalid', `port ${JSON.stringify(port)} is not 1-65535`);
    if (port.hostIp !== undefined && !/^\d{1,3}(\.\d{1,3}){3}$/.test(port.hostIp)) refuse('container-spec-invalid', `port hostIp ${JSON.stringify(port.hostIp)} is not an IPv4 address`);
    const protocol = port.protocol === 'udp' ? 'udp' : 'tcp';
    args.push('--publish', `${port.hostIp ? `${port.hostIp}:` : ''}${port.host ?? port.container}:${port.container}/${protocol}`);
  }
  const pathOk = (path: string) => /^(\/[^/:,\u0000]+)+$/.test(path) && !/(^|\/)\.\.?(\/|$)/.test(path) && !hasControl(path);
  for (const volume of spec.volumes ?? []) {
    if (!pathOk(volume.target)) refuse('container-spec-invalid', `volume target ${JSON.stringify(volume.target)} is not an absolute path without ':' or ','`);
    let source: string;
    if (volume.hostPath !== undefined) {
      if (!pathOk(volume.hostPath)) refuse('container-spec-invalid', `hostPath ${JSON.stringify(volume.hostPath)} is not an absolute path without ':' or ','`);
      source = resolveOnDevice(volume.hostPath);
      if (!pathOk(source)) refuse('container-spec-invalid', `hostPath ${volume.hostPath} resolves to ${JSON.stringify(source)}, which cannot be mounted`);
    } else if (volume.name !== undefined && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(volume.name)) {
      // Named volumes belong to their app: kept across versions, never shared by accident.
      source = `${opts.volumePrefix}-${app}-${volume.name}`;
    } else {
      source = refuse('container-spec-invalid', `volume ${JSON.stringify(volume)} needs a name (letters, digits, _.-) or a hostPath`);
    }
    args.push('--volume', `${source}:${volume.target}${volume.readOnly ? ':ro' : ''}`);
  }
  if (spec.resources?.memory !== undefined) {
    let bytes = 0;
    try {
      bytes = memoryBytes(spec.resources.memory);
    } catch (err) {
      refuse('container-spec-invalid', (err as Error).message);
    }
    args.push('--memory', String(bytes));
  }
  if (spec.resources?.cpus !== undefined) {
    const cpus = spec.resources.cpus;
    if (!(typeof cpus === 'number' && cpus > 0 && cpus <= 1024)) refuse('container-spec-invalid', `resources.cpus ${JSON.stringify(cpus)} is not a number of cores`);
    args.push('--cpus', String(cpus));
  }
  for (const device of spec.devices ?? []) {
    if (!/^\/dev(\/[^/:,\u0000]+)+$/.test(device.path) || /(^|\/)\.\.?(\/|$)/.test(device.path)) refuse('container-spec-invalid', `device ${JSON.stringify(device.path)} is not a path under /dev`);
    if (device.target !== undefined && !pathOk(device.target)) refuse('container-spec-invalid', `device target ${JSON.stringify(device.target)} is not an absolute path`);
    if (device.permissions !== undefined && !/^r?w?m?$/.test(device.permissions)) refuse('container-spec-invalid', `device permissions ${JSON.stringify(device.permissions)} are not r, w, m`);
    args.push('--device', [device.path, device.target ?? device.path, ...(device.permissions ? [device.permissions] : [])].join(':'));
  }
  if (spec.network !== undefined) {
    // No `container:...` or `ns:...`: joining another container's or the host's namespaces is not a name.
    if (!/^[a-z0-9][a-z0-9_.-]{0,62}$/.test(spec.network)) refuse('container-spec-invalid', `network ${JSON.stringify(spec.network)} is not host, bridge, none or a network name`);
    args.push('--network', spec.network);
  }
  if (spec.user !== undefined) {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$/.test(spec.user)) refuse('container-spec-invalid', `user ${JSON.stringify(spec.user)} is not uid, uid:gid or a user name`);
    args.push('--user', spec.user);
  }
  if (spec.privileged) args.push('--privileged');
  args.push('--stop-timeout', String(stopSeconds(app, version, spec, 10)));
  const command = spec.command ?? [];
  const rest = [...command.slice(1), ...(spec.args ?? [])];
  for (const word of [...command, ...rest]) {
    if (typeof word !== 'string' || word.includes('\u0000')) refuse('container-spec-invalid', 'command and args must be strings without NUL characters');
  }
  if (command.length > 0) {
    // podman reads an entrypoint that looks like a JSON list as one; a program name never starts with "[".
    if (command[0]!.startsWith('[') || command[0] === '') refuse('container-spec-invalid', `command[0] ${JSON.stringify(command[0])} is not a program`);
    args.push('--entrypoint', command[0]!);
  }
  // Everything after the image is the container's command line, never the engine's options.
  args.push(container.image, ...rest);
  return args;
}

/**
 * The image reference a version is pulled and run by, from its artifact: `repository@sha256:...`.
 * Throws (running version untouched) when the App gives no digest.
 */
export function imageOf(app: string, target: DesiredAppWire, spec: ContainerSpec): { repository: string; digest: string } {
  const artifact = target.artifact;
  const fail = (why: string): never => {
    throw new AppApplyError('image-digest-missing', `${app} ${target.version}: ${why}; not installed`, { touchedPrevious: false });
  };
  if (!artifact || !('image' in artifact)) return fail(`the App has no image artifact (image and digest) for version ${target.version}: container apps are pulled by digest only, never by tag`);
  const image = artifact as ImageArtifact;
  if (!DIGEST.test(image.digest)) return fail(`digest ${JSON.stringify(image.digest)} is not "sha256:" and 64 lowercase hex digits`);
  const repository = repositoryOf(image.image || spec.image);
  if (!REPOSITORY.test(repository)) return fail(`image ${JSON.stringify(image.image)} is not an image repository (lowercase host/path)`);
  return { repository, digest: image.digest };
}

export class ContainerAppRuntime implements DeviceRuntime {
  private engine: Promise<ContainerEngine> | null = null;
  private readonly prefix: string;
  private readonly healthIntervalMs: number;
  private readonly settleMs: number;

  constructor(private readonly opts: ContainerRuntimeOptions) {
    this.prefix = opts.namePrefix ?? 'cascade';
    checkContainerPrefix(this.prefix);
    this.healthIntervalMs = opts.healthIntervalMs ?? 2000;
    this.settleMs = opts.settleMs ?? 1000;
  }

  /** The engine, found on first use (an agent running only exec apps never needs one). */
  private async getEngine(): Promise<ContainerEngine> {
    this.engine ??= ContainerEngine.open(this.opts.engine);
    try {
      return await this.engine;
    } catch (err) {
      this.engine = null;
      throw err;
    }
  }

  private nameOf(app: string, version: string): string {
    return containerName(this.prefix, app, version);
  }

  async install(app: string, target: AppTarget, previous: InstalledApp | null, signal: AbortSignal, log: Logger): Promise<InstalledApp> {
    const spec = target.runtime;
    if (!spec || spec.type !== 'container') {
      throw new AppApplyError('runtime-unsupported', `${app} ${target.version}: the container runtime runs container apps; the App has ${spec ? `runtime type '${spec.type}'` : 'no runtime'}`, { touchedPrevious: false });
    }
    const { repository, digest } = imageOf(app, target, spec);
    const container: InstalledContainer = { name: this.nameOf(app, target.version), image: `${repository}@${digest}`, digest };
    if (target.revision) container.revision = target.revision;
    if (previous?.container) container.previousImage = previous.container.image;
    const engine = await this.engineOrFail(app, target.version);
    // Checks the spec (and the Region's policy) before anything is downloaded.
    createArgs(app, target.version, spec, container, { deviceId: this.opts.deviceId, engine: engine.kind, volumePrefix: this.prefix });

    const installed: InstalledApp = { version: target.version, deployment: target.deployment, runtime: spec, container };
    if (target.healthCheck) installed.healthCheck = target.healthCheck;

    container.image = await this.ensureImage(engine, app, target.version, repository, digest, spec.regionPolicy?.registryMirror, signal, log);

    // An agent that lost its state (or restarted mid-swap) finds the version running already: adopt it.
    const existing = await engine.inspect(container.name, signal);
    if (existing && this.owns(existing, app) && existing.labels[LABEL_DIGEST] === digest && existing.running) {
      log.info({ app, version: target.version, container: container.name }, 'adopting the running container');
      await this.stopOthers(engine, app, container.name, signal, log);
      return installed;
    }

    // From here on the running version is disturbed: a failure must put it back.
    try {
      await this.stopOthers(engine, app, container.name, signal, log);
      if (existing) await engine.remove(container.name);
      await engine.runDetached(createArgs(app, target.version, spec, container, { deviceId: this.opts.deviceId, engine: engine.kind, volumePrefix: this.prefix }), signal);
    } catch (err) {
      if (signal.aborted || err instanceof AppApplyError) throw err;
      throw new AppApplyError('container-start-failed', `${app} ${target.version}: ${(err as Error).message}`, { touchedPrevious: true, partial: installed });
    }
    log.info({ app, version: target.version, container: container.name, image: container.image }, 'container started');
    return installed;
  }

  async healthCheck(app: string, installed: InstalledApp, signal: AbortSignal, log: Logger): Promise<void> {
    const name = installed.container?.name;
    if (!name) return;
    const engine = await this.getEngine();
    const check: HealthCheck = installed.healthCheck ?? {};
    await checkHealthWithRetries({ app, installed, check, intervalMs: this.healthIntervalMs, signal, log, probe: (timeoutMs) => this.probe(engine, name, installed, check, timeoutMs, signal) });
  }

  async restore(app: string, previous: InstalledApp | null, failed: InstalledApp | null, signal: AbortSignal, log: Logger): Promise<void> {
    const engine = await this.getEngine();
    if (failed?.container && failed.container.name !== previous?.container?.name) {
      await engine.remove(failed.container.name).catch((err: unknown) => log.warn({ app, err: (err as Error).message }, 'could not remove the failed container'));
    }
    if (!previous?.container || previous.runtime?.type !== 'container') return;
    await this.bringBack(engine, app, previous, signal, log);
  }

  async remove(app: string, installed: InstalledApp, _signal: AbortSignal, log: Logger): Promise<void> {
    const engine = await this.getEngine();
    for (const name of await engine.containersWith({ [LABEL_APP]: app, [LABEL_DEVICE]: this.opts.deviceId })) {
      // Stopped with its grace period first: an app being removed may want to finish what it does.
      if ((await engine.inspect(name))?.running) await engine.stop(name, null).catch(() => {});
      await engine.remove(name);
      log.info({ app, container: name }, 'container removed');
    }
    const repositories = new Set<string>();
    if (installed.container) repositories.add(repositoryOf(installed.container.image));
    if (installed.container?.previousImage) repositories.add(repositoryOf(installed.container.previousImage));
    for (const repository of repositories) await this.pruneImages(engine, app, repository, new Set(), log);
  }

  async discard(app: string, old: InstalledApp): Promise<void> {
    if (!old.container) return;
    const engine = await this.getEngine();
    const running = await this.runningOf(engine, app);
    if (running && running.name === old.container.name) return;
    await engine.remove(old.container.name);
    // Keep the image of the version now running and of the one before it (a rollback needs no download).
    const keep = new Set([old.container.digest]);
    if (running?.labels[LABEL_DIGEST]) keep.add(running.labels[LABEL_DIGEST]);
    await this.pruneImages(engine, app, repositoryOf(old.container.image), keep, undefined);
  }

  /** Why the installed version is not running as installed (stopped or removed by hand), or null when it is. */
  async drift(app: string, installed: InstalledApp, signal: AbortSignal): Promise<string | null> {
    const name = installed.container?.name;
    if (!name) return null;
    const engine = await this.getEngine();
    const info = await engine.inspect(name, signal);
    if (!info) return `container ${name} was removed`;
    if (!info.running) return `container ${name} is ${info.status}${info.exitCode !== null ? ` (exit code ${info.exitCode})` : ''}`;
    return null;
  }

  private async engineOrFail(app: string, version: string): Promise<ContainerEngine> {
    try {
      return await this.getEngine();
    } catch (err) {
      throw new AppApplyError((err as CascadeError).code ?? 'container-engine-missing', `${app} ${version}: ${(err as Error).message}`, { touchedPrevious: false });
    }
  }

  /** Makes sure `repository@digest` is present and is that digest; returns the reference to run it by. */
  private async ensureImage(engine: ContainerEngine, app: string, version: string, repository: string, digest: string, mirror: string | undefined, signal: AbortSignal, log: Logger): Promise<string> {
    const ref = `${repository}@${digest}`;
    const present = await engine.repoDigests(ref, signal).catch((err: unknown) => {
      if (signal.aborted) throw err;
      return null;
    });
    if (present) {
      this.checkDigest(engine, app, version, ref, digest, present);
      return ref;
    }
    const sources: string[] = [];
    if (mirror) sources.push(`${mirror}/${repository.includes('/') && /[.:]|^localhost$/.test(repository.split('/')[0]!) ? repository.slice(repository.indexOf('/') + 1) : repository}@${digest}`);
    sources.push(ref);
    let lastError: Error | null = null;
    for (const source of sources) {
      const started = Date.now();
      try {
        await engine.pull(source, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        lastError = err as Error;
        if (source !== ref) log.warn({ app, version, mirror: source, err: lastError.message }, 'pull through the registry mirror failed; pulling from the registry');
        continue;
      }
      await this.verifyDigest(engine, app, version, source, digest, signal);
      log.info({ app, version, image: source, ms: Date.now() - started }, 'image pulled');
      return source;
    }
    const words = lastError?.message ?? 'pull failed';
    const mismatch = /digest|manifest .*(match|verif)/i.test(words);
    throw new AppApplyError(
      mismatch ? 'image-digest-mismatch' : 'image-pull-failed',
      mismatch
        ? `${app} ${version}: the registry did not serve ${ref} (${words}); not installed`
        : `${app} ${version}: cannot pull ${ref}: ${words}; not installed`,
      { touchedPrevious: false },
    );
  }

  /** The local image must carry the digest the fleet repository names; anything else is removed. */
  private async verifyDigest(engine: ContainerEngine, app: string, version: string, ref: string, digest: string, signal: AbortSignal): Promise<void> {
    let digests: string[] | null;
    try {
      digests = await engine.repoDigests(ref, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      throw new AppApplyError('image-pull-failed', `${app} ${version}: cannot inspect ${ref}: ${(err as Error).message}; not installed`, { touchedPrevious: false });
    }
    this.checkDigest(engine, app, version, ref, digest, digests ?? []);
  }

  private checkDigest(engine: ContainerEngine, app: string, version: string, ref: string, digest: string, digests: string[]): void {
    if (digests.some((d) => d.endsWith(`@${digest}`))) return;
    void engine.removeImage(ref).catch(() => {});
    throw new AppApplyError(
      'image-digest-mismatch',
      `${app} ${version}: the image pulled as ${ref} has digest ${digests.map((d) => d.slice(d.indexOf('@') + 1)).join(', ') || 'none'}, the fleet repository says ${digest}; removed, not installed`,
      { touchedPrevious: false },
    );
  }

  private owns(info: ContainerInfo, app: string): boolean {
    return info.labels[LABEL_APP] === app && info.labels[LABEL_DEVICE] === this.opts.deviceId;
  }

  /** The running container of `app` on this device, if any. */
  private async runningOf(engine: ContainerEngine, app: string): Promise<ContainerInfo | null> {
    for (const name of await engine.containersWith({ [LABEL_APP]: app, [LABEL_DEVICE]: this.opts.deviceId }, undefined, true)) {
      const info = await engine.inspect(name);
      if (info?.running) return info;
    }
    return null;
  }

  /** Stops every other running container of the app (kept, for going back). */
  private async stopOthers(engine: ContainerEngine, app: string, keep: string, signal: AbortSignal, log: Logger): Promise<void> {
    for (const name of await engine.containersWith({ [LABEL_APP]: app, [LABEL_DEVICE]: this.opts.deviceId }, signal, true)) {
      if (name === keep) continue;
      // The container's own stop timeout (its App's stopGracePeriod) applies.
      await engine.stop(name, null, signal);
      log.info({ app, container: name }, 'container stopped');
    }
  }

  /** Starts `installed` again: its container if it is still there, else a new one from its (local) image. */
  private async bringBack(engine: ContainerEngine, app: string, installed: InstalledApp, signal: AbortSignal, log: Logger): Promise<void> {
    const container = installed.container!;
    const spec = installed.runtime as ContainerSpec;
    const info = await engine.inspect(container.name, signal);
    if (info && this.owns(info, app) && info.labels[LABEL_DIGEST] === container.digest) {
      if (!info.running) await engine.start(container.name, signal);
    } else {
      if (info) await engine.remove(container.name);
      const repository = repositoryOf(container.image);
      container.image = await this.ensureImage(engine, app, installed.version, repository, container.digest, spec.regionPolicy?.registryMirror, signal, log);
      await engine.runDetached(createArgs(app, installed.version, spec, container, { deviceId: this.opts.deviceId, engine: engine.kind, volumePrefix: this.prefix }), signal);
    }
    await this.stopOthers(engine, app, container.name, signal, log);
    log.info({ app, version: installed.version, container: container.name }, 'container running again');
  }

  /** Removes the images of `repository` whose digest is not in `keep` and that no container uses. */
  private async pruneImages(engine: ContainerEngine, app: string, repository: string, keep: Set<string>, log: Logger | undefined): Promise<void> {
    let images: Array<{ digest: string; id: string }>;
    try {
      images = await engine.imagesOf(repository);
    } catch {
      return;
    }
    for (const image of images) {
      if (keep.has(image.digest)) continue;
      try {
        await engine.removeImage(DIGEST.test(image.digest) ? `${repository}@${image.digest}` : image.id);
        log?.info({ app, image: `${repository}@${image.digest}` }, 'image pruned');
      } catch {
        // still used by a container (another app's, or one stopped by hand): kept
      }
    }
  }

  private async probe(
    engine: ContainerEngine,
    name: string,
    installed: InstalledApp,
    check: HealthCheck,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<{ reason: string; final: boolean } | null> {
    const stateProblem = async (): Promise<{ reason: string; final: boolean } | null> => {
      const info = await engine.inspect(name, signal);
      if (!info) return { reason: `container ${name} is gone`, final: true };
      if (info.running) return null;
      const logs = await engine.logs(name);
      return {
        reason: `container ${name} is ${info.status}${info.exitCode !== null ? ` with exit code ${info.exitCode}` : ''}${info.error ? `: ${info.error}` : ''}${logs ? `; last output: ${engineWords(logs, '')}` : ''}`,
        // A container that exited is not coming back by itself unless the engine restarts it.
        final: (installed.runtime as ContainerSpec | undefined)?.restart === 'no',
      };
    };
    if (check.exec) {
      let argv: string[];
      try {
        // A list is the argument vector as is; a string is split into words (there is no shell in here).
        argv = Array.isArray(check.exec) ? [...check.exec] : splitWords(check.exec);
      } catch (err) {
        return { reason: `healthCheck.exec: ${(err as Error).message}`, final: true };
      }
      if (argv.length === 0) return { reason: 'healthCheck.exec is empty', final: true };
      const result = await engine.exec(name, argv, timeoutMs, signal);
      if (result.exitCode !== 0) {
        const exited = await stateProblem();
        if (exited) return exited;
        const how = result.timedOut ? `did not finish within ${timeoutMs} ms` : `exited with ${result.exitCode}`;
        return { reason: `\`${Array.isArray(check.exec) ? check.exec.join(' ') : check.exec}\` in ${name} ${how}${result.output ? `: ${engineWords(result.output, '')}` : ''}`, final: false };
      }
    }
    if (check.http) {
      const url = check.http.replaceAll('{version}', encodeURIComponent(installed.version));
      try {
        const response = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]), redirect: 'manual' });
        await response.arrayBuffer();
        if (response.status < 200 || response.status >= 300) return (await stateProblem()) ?? { reason: `GET ${url} answered ${response.status}`, final: false };
      } catch (err) {
        if (signal.aborted) throw err;
        return (await stateProblem()) ?? { reason: `GET ${url} failed: ${(err as Error).message}`, final: false };
      }
    }
    if (!check.exec && !check.http) {
      const info = await engine.inspect(name, signal);
      if (info?.healthcheck) {
        // The image's own HEALTHCHECK decides.
        if (engine.kind === 'podman') {
          const result = await engine.runHealthcheck(name, timeoutMs, signal);
          if (!result.healthy) return { reason: `the image's HEALTHCHECK failed${result.output ? `: ${result.output}` : ''}`, final: false };
        } else if (info.health?.status !== 'healthy') {
          return { reason: `the image's HEALTHCHECK says ${info.health?.status ?? 'nothing yet'}${info.health?.lastOutput ? `: ${info.health.lastOutput}` : ''}`, final: false };
        }
      } else {
        // Nothing to ask: the container must keep running for a moment.
        await sleep(this.settleMs, signal);
      }
    }
    return stateProblem();
  }
}
