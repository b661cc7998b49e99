import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, preHandlerHookHandler } from 'fastify';
import type { RegionRecord } from '../storage/hub-store.js';
import type { HubSummaryInput } from '../protocol/hub-summary.js';
import type { HubPlugin } from '../hub/hub-server.js';
import { referencedRevisions, regionView, revisionView, searchDevices, type DashboardOverview, type DeviceSearch } from '../hub/views.js';
import type { RegionPlugin } from '../region/compose.js';

export type { DashboardOverview } from '../hub/views.js';

export interface DashboardData {
  overview(): DashboardOverview;
  devices(query: string, limit: number): DeviceSearch;
}

/** The hub's dashboard: `startHub({ plugins: [hubDashboard] })`. */
export const hubDashboard: HubPlugin = (app, hub) =>
  registerDashboard(app, { mode: 'hub', guard: hub.guard, data: { overview: hub.overview, devices: hub.devices } });

/** A region's own dashboard: `startRegion({ plugins: [regionDashboard] })`. */
export const regionDashboard: RegionPlugin = (app, region) =>
  registerDashboard(app, { mode: 'region', summary: region.summary, clock: region.clock, devicesGuard: region.operatorGuard });

export type DashboardOptions =
  | { mode: 'hub'; data: DashboardData; guard?: preHandlerHookHandler }
  | {
      mode: 'region';
      summary: () => HubSummaryInput;
      clock?: () => number;
      /** Guards the device list (ids and versions), like the region's inventory. */
      devicesGuard?: preHandlerHookHandler;
    };

const STATIC_FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'render.js': 'text/javascript; charset=utf-8',
  'dom.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/** Only this origin: no CDN, no external font, nothing inline to inject into. */
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

export const DEFAULT_DEVICE_LIMIT = 200;
const MAX_DEVICE_LIMIT = 2_000;

function loadStaticFiles(): Map<string, Buffer> {
  const dir = dirname(fileURLToPath(import.meta.url));
  const files = new Map<string, Buffer>();
  for (const name of Object.keys(STATIC_FILES)) files.set(name, readFileSync(join(dir, name)));
  return files;
}

/** The dashboard data of a region serving its own dashboard: just itself, no history. */
export function regionDashboardData(summary: () => HubSummaryInput, clock: () => number = Date.now): DashboardData {
  const record = (): RegionRecord => {
    const now = clock();
    return { summary: { ...summary(), sequence: 0, at: now }, receivedAt: now };
  };
  return {
    overview() {
      const current = record();
      const now = current.receivedAt;
      const { revision, rollouts } = current.summary;
      const started = new Map<string, number>();
      for (const rollout of rollouts) started.set(rollout.revision, Math.max(started.get(rollout.revision) ?? 0, rollout.startedAt ?? 0));
      // A refused attempt first, then the applied revision, then older rollouts, newest first.
      const rank = (sha: string) => (sha === revision.attempted && revision.error ? 0 : sha === revision.applied ? 1 : 2);
      const shas = [...referencedRevisions([current])].sort((a, b) => rank(a) - rank(b) || (started.get(b) ?? 0) - (started.get(a) ?? 0));
      return {
        mode: 'region',
        at: now,
        staleAfterMs: null,
        regions: [regionView(current, now, Infinity)],
        revisions: shas.map((sha) => revisionView(sha, [current], now, Infinity)),
      };
    },
    devices(query, limit) {
      return searchDevices([record()], query, limit);
    },
  };
}

/**
 * Serves the web dashboard: `/` (the page), `/dashboard/*` (its modules and CSS), and the JSON it
 * polls, `/api/v1/dashboard` and `/api/v1/dashboard/devices?q=&limit=`. The hub shows the fleet;
 * a region shows itself.
 */
export function registerDashboard(app: FastifyInstance, opts: DashboardOptions): void {
  const files = loadStaticFiles();
  const data = opts.mode === 'hub' ? opts.data : regionDashboardData(opts.summary, opts.clock);
  const preHandler = opts.mode === 'hub' && opts.guard ? [opts.guard] : [];
  const devicesPreHandler = opts.mode === 'region' ? (opts.devicesGuard ? [opts.devicesGuard] : []) : preHandler;

  const sendFile = (name: string) => ({
    body: files.get(name)!,
    headers: {
      'content-type': STATIC_FILES[name]!,
      'cache-control': 'no-cache',
      'content-security-policy': CONTENT_SECURITY_POLICY,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    },
  });

  app.get('/', { preHandler }, async (_request, reply) => {
    const file = sendFile('index.html');
    return reply.headers(file.headers).send(file.body);
  });
  app.get<{ Params: { file: string } }>('/dashboard/:file', { preHandler }, async (request, reply) => {
    const name = request.params.file;
    if (!(name in STATIC_FILES)) return reply.callNotFound();
    const file = sendFile(name);
    return reply.headers(file.headers).send(file.body);
  });
  app.get('/api/v1/dashboard', { preHandler }, async (_request, reply) => {
    return reply.header('cache-control', 'no-store').send(data.overview());
  });
  app.get<{ Querystring: { q?: string; limit?: string } }>('/api/v1/dashboard/devices', { preHandler: devicesPreHandler }, async (request, reply) => {
    const query = typeof request.query.q === 'string' ? request.query.q.slice(0, 200) : '';
    const asked = Number(request.query.limit ?? DEFAULT_DEVICE_LIMIT);
    const limit = Number.isInteger(asked) && asked > 0 ? Math.min(asked, MAX_DEVICE_LIMIT) : DEFAULT_DEVICE_LIMIT;
    return reply.header('cache-control', 'no-store').send(data.devices(query, limit));
  });
}
