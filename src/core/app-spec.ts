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
export interface ContainerRuntime {
  type: 'container';
  image: string;
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
  exec?: CommandTemplate;
  http?: string;
  timeout?: string;
  retries?: number;
}

