/**
 * How a device runs an app: shared by the fleet documents (desired/model.ts) and the
 * wire protocol, so the agent can use them without importing reconciler code.
 */
/**
 * A command of an App: a list of arguments run without a shell (preferred), or one /bin/sh line.
 * `{version}`, `{artifact}` and `{app}` stand for values that are always passed as data (see command-template.ts).
 */
export type CommandTemplate = string | string[];

export interface ExecRuntime {
  type: 'exec';
  install: CommandTemplate;
  start?: CommandTemplate;
  stop?: CommandTemplate;
}
/**
 * A container app's run spec (`runtime: { type: container, ... }`). Every field reaches the device as
 * data: the agent turns it into an argument list for the engine, never into a shell command.
 */
export interface ContainerRuntime {
  type: 'container';
  /** Repository, without tag or digest; each version's digest comes from `artifacts`. */
  image: string;
  /** Replaces the image's ENTRYPOINT. */
  command?: string[];
  /** Replaces the image's CMD. */
  args?: string[];
  env?: Record<string, string>;
  ports?: ContainerPort[];
  volumes?: ContainerVolume[];
  /** Engine restart policy; `always` when absent. */
  restart?: ContainerRestart;
  resources?: ContainerResources;
  /** Host devices passed through, e.g. an accelerator. */
  devices?: ContainerDevice[];
  /** `host`, `bridge`, `none` or the name of an engine network; the engine's default when absent. */
  network?: string;
  /** How long the container gets to stop after SIGTERM before it is killed, e.g. 30s; 10s when absent. */
  stopGracePeriod?: string;
  /** `uid`, `uid:gid` or a user name of the image. */
  user?: string;
  /** Opt-in: run privileged. Refused unless the device's Region allows it (Region spec.containers.allowPrivileged). */
  privileged?: boolean;
  /** Opt-in: host paths outside the Region's allow-list. Refused unless the Region allows it (spec.containers.allowAnyHostPath). */
  anyHostPath?: boolean;
  /**
   * Set by the region from its Region document when it hands the app out; never written in an App
   * (the App schema has no such field), so the repository's App cannot grant itself privileges.
   */
  regionPolicy?: ContainerRegionPolicy;
}
export type ContainerRestart = 'no' | 'always' | 'on-failure' | 'unless-stopped';
export interface ContainerPort {
  container: number;
  /** Host port; the same as `container` when absent. */
  host?: number;
  protocol?: 'tcp' | 'udp';
  /** Host address to bind, e.g. 127.0.0.1; every address when absent. */
  hostIp?: string;
}
/** A named volume (`name`, kept across versions) or a host path (`hostPath`, checked against the allow-list). */
export interface ContainerVolume {
  name?: string;
  hostPath?: string;
  target: string;
  readOnly?: boolean;
}
export interface ContainerResources {
  /** e.g. 256Mi, 1G, 512M. */
  memory?: string;
  /** CPU cores, e.g. 0.5. */
  cpus?: number;
}
export interface ContainerDevice {
  /** Under /dev on the host. */
  path: string;
  /** Path in the container; `path` when absent. */
  target?: string;
  permissions?: string;
}
/** What a Region lets its container apps do (Region `spec.containers`), carried to devices with each app. */
export interface ContainerRegionPolicy {
  /** Host path prefixes apps may mount; nothing outside them unless both the App and the Region opt in. */
  hostPaths?: string[];
  allowPrivileged?: boolean;
  allowAnyHostPath?: boolean;
  /** Pull through this registry mirror (host[:port], optionally with a path prefix). */
  registryMirror?: string;
}
export type AppRuntime = ExecRuntime | ContainerRuntime;

export interface FileArtifact {
  url: string;
  sha256: string;
  size: number;
}
export interface ImageArtifact {
  image: string;
  digest: string;
}
export type Artifact = FileArtifact | ImageArtifact;

export interface HealthCheck {
  /** Exec apps: run on the device (a list of arguments, or one /bin/sh line). Container apps: run inside the container, without a shell (a string is split into words). */
  exec?: CommandTemplate;
  http?: string;
  timeout?: string;
  retries?: number;
}

