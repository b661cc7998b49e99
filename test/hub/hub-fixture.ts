import { hubDashboard } from '../../src/dashboard/serve.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { regionToken, signBody } from '../../src/protocol/hub-auth.js';
import { startHub, type HubConfig, type RunningHub } from '../../src/hub/hub-server.js';
import { SUMMARY_PATH, type HubSummary } from '../../src/protocol/hub-summary.js';
import type { DeploymentRolloutStatus, RolloutPhase, WaveStatus } from '../../src/plan/rollout/types.js';

export const HUB_TOKEN = 'hub-secret-for-tests';

export async function tempDir(prefix: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export function startTestHub(dataDir: string, overrides: Partial<HubConfig> = {}): Promise<RunningHub> {
  return startHub({ host: '127.0.0.1', port: 0, dataDir, token: HUB_TOKEN, log: false, plugins: [hubDashboard], ...overrides });
}

export function wave(n: number, percent: number, counts: Partial<Omit<WaveStatus, 'wave' | 'percent'>>): WaveStatus {
  const w = { new: 0, pending: 0, updating: 0, healthy: 0, failed: 0, offline: 0, ...counts };
  return { wave: n, percent, devices: w.new + w.pending + w.updating + w.healthy + w.failed + w.offline, ...w };
}

export function rollout(
  deployment: string,
  revision: string,
  state: RolloutPhase,
  waves: WaveStatus[],
  extra: Partial<DeploymentRolloutStatus> = {},
): DeploymentRolloutStatus {
  return {
    deployment,
    app: extra.app ?? deployment,
    version: extra.version ?? '2.0.0',
    revision,
    state,
    currentWave: extra.currentWave ?? waves.length,
    waves,
    rollback: false,
    startedAt: 1_000,
    message: state,
    ...extra,
  };
}

let sequence = 1;

export function summary(region: string, fields: Partial<HubSummary> = {}): HubSummary {
  return {
    region,
    sequence: sequence++,
    at: Date.now(),
    revision: { attempted: null, applied: null, error: null },
    source: { reachable: true },
    devices: { total: 0, converged: 0, updating: 0, failed: 0, offline: 0 },
    updatesSent: 0,
    rollouts: [],
    ...fields,
  };
}

export interface PushOptions {
  /** Token to send; default the region's own. */
  token?: string | null;
  /** Signature to send; default the right one. */
  signature?: string | null;
  /** Path region; default summary.region. */
  asRegion?: string;
  body?: string;
}

/** Pushes a summary over the real API, as a region would. */
export async function pushSummary(hubUrl: string, s: HubSummary, opts: PushOptions = {}): Promise<{ status: number; body: any }> {
  const token = opts.token === undefined ? regionToken(HUB_TOKEN, s.region) : opts.token;
  const body = opts.body ?? JSON.stringify(s);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  const signature = opts.signature === undefined ? (token !== null ? signBody(token, body) : null) : opts.signature;
  if (signature !== null) headers['x-cascade-signature'] = signature;
  const response = await fetch(new URL(SUMMARY_PATH(opts.asRegion ?? s.region), hubUrl), { method: 'POST', headers, body });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

export async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(url, { headers, redirect: 'manual' });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, body };
}

/** Polls until `check` returns a value other than undefined; fails after `timeoutMs` with `describe()`. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs: number, describe: () => string | Promise<string>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
