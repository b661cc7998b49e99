import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { AppRuntime, HealthCheck } from '../core/app-spec.js';
import { CascadeError } from '../core/errors.js';

/** A version installed on the device, with what is needed to restart or stop it later. */
export interface InstalledApp {
  version: string;
  deployment?: string;
  runtime?: AppRuntime;
  healthCheck?: HealthCheck;
  /** Downloaded artifact of this version, kept so it can be reinstalled when a newer one fails. */
  artifactPath?: string | null;
  /** Container apps: the container of this version and the image it runs (kept until a newer one is healthy). */
  container?: InstalledContainer;
}

export interface InstalledContainer {
  name: string;
  /** Reference the container was created from: `repository@sha256:...`. */
  image: string;
  digest: string;
  /** Fleet revision the version was handed out in (label io.cascade.revision). */
  revision?: string;
  /** The image of the version this one replaced, kept for going back (removed with the app). */
  previousImage?: string;
}

/** A version that failed: not tried again until the region asks for another version. */
export interface FailedApp {
  version: string;
  message: string;
  /** The attempt that failed (DesiredAppWire.attempt; absent = 0): a higher one is tried again. */
  attempt?: number;
}

export interface AgentState {
  /** Identity the token was issued for: a different device id or region means enrolling again. */
  deviceId: string | null;
  regionUrl: string | null;
  token: string | null;
  installed: Record<string, InstalledApp>;
  failed: Record<string, FailedApp>;
  /** Sequence number of the last report sent (ReportRequest.seq); kept across restarts and re-enrolments. */
  reportSeq: number;
}

export interface AgentStateStore {
  load(): AgentState;
  save(state: AgentState): void;
}

export function emptyAgentState(): AgentState {
  return { deviceId: null, regionUrl: null, token: null, installed: {}, failed: {}, reportSeq: 0 };
}

export const AGENT_STATE_FILE = 'agent-state.json';
export const AGENT_STATE_WRITE_FAILED = 'agent-state-write-failed';

/**
 * The agent's state in `<state-dir>/agent-state.json`, mode 0600 (it holds the device token).
 * Written to a temporary file, synced and renamed, so a crash leaves the old or the new file, never half of one.
 */
export class FileAgentState implements AgentStateStore {
  readonly path: string;

  constructor(readonly stateDir: string) {
    this.path = join(stateDir, AGENT_STATE_FILE);
  }

  load(): AgentState {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyAgentState();
      throw new CascadeError('agent-state-unreadable', `cannot read ${this.path}: ${(err as Error).message}`);
    }
    try {
      const parsed = JSON.parse(text) as Partial<AgentState>;
      return {
        deviceId: parsed.deviceId ?? null,
        regionUrl: parsed.regionUrl ?? null,
        token: parsed.token ?? null,
        installed: parsed.installed ?? {},
        failed: parsed.failed ?? {},
        reportSeq: Number.isSafeInteger(parsed.reportSeq) && parsed.reportSeq! > 0 ? parsed.reportSeq! : 0,
      };
    } catch {
      throw new CascadeError('agent-state-invalid', `${this.path} is not valid JSON; move it away to enrol again (installed versions will be reinstalled)`);
    }
  }

  save(state: AgentState): void {
    const temporary = `${this.path}.${process.pid}.tmp`;
    try {
      mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
      const fd = openSync(temporary, 'w', 0o600);
      try {
        writeSync(fd, `${JSON.stringify(state, null, 2)}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temporary, this.path);
    } catch (err) {
      throw new CascadeError(AGENT_STATE_WRITE_FAILED, `cannot write ${this.path}: ${(err as Error).message}; check that --state-dir is writable`);
    }
  }
}

/** State kept in memory only: for simulated devices. */
export class MemoryAgentState implements AgentStateStore {
  private state: AgentState;

  constructor(initial: Partial<AgentState> = {}) {
    this.state = { ...emptyAgentState(), ...initial };
  }

  load(): AgentState {
    return structuredClone(this.state);
  }

  save(state: AgentState): void {
    this.state = structuredClone(state);
  }

  /** The state as saved last, without copying (read-only: for counting many devices cheaply). */
  peek(): Readonly<AgentState> {
    return this.state;
  }
}
