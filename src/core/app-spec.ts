/**
 * How a device runs an app: shared by the fleet documents (desired/model.ts) and the
 * wire protocol, so the agent can use them without importing reconciler code.
 */
export interface ExecRuntime {
  type: 'exec';
  /** Shell command; `{version}` and `{artifact}` are substituted. */
  install: string;
  start?: string;
  stop?: string;
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
  exec?: string;
  http?: string;
  timeout?: string;
  retries?: number;
}

