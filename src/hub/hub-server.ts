import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify';
import type { Logger } from 'pino';
import { CascadeError } from '../core/errors.js';
import { HttpError, createRegionHttpServer } from '../http/http-server.js';
import { SIGNATURE_HEADER, bearerToken, regionToken, secretsEqual, signBody } from '../protocol/hub-auth.js';
import { FleetTracker } from './fleet-tracker.js';
import { createHubMetrics } from './hub-metrics.js';
import { HubStore } from '../storage/hub-store.js';
import { createReadGuard } from './read-access.js';
import { DEFAULT_STALE_AFTER_MS, MAX_SUMMARY_BYTES, hubSummarySchema, isValidRegionName, type HubSummary } from '../protocol/hub-summary.js';
import type { DashboardOverview, DeviceSearch, FleetView, RevisionView } from './views.js';
import { WebhookDispatcher } from './webhooks.js';
import { HubEvents } from './events.js';
import { EVENTS_PATH } from '../protocol/events.js';

export interface HubConfig {
  host: string;
  port: number;
  dataDir: string;
  /** The hub's secret: region tokens derive from it (auth.ts); also accepted for reads. */
  token: string;
  /** When set, reads (API, dashboard, metrics) need it or the hub token; otherwise they are open. */
  readToken?: string | null;
  /** URLs POSTed a `revision.state` event on each change of a commit's overall state. */
  webhooks?: readonly string[];
  /** Signs webhook bodies (X-Cascade-Signature) when set. */
  webhookSecret?: string | null;
  /** A region with no summary for this long is stale. Default 60 s (4 heartbeats). */
  staleAfterMs?: number;
  /** Webhook retries: first delay (doubling) and attempts per event. */
  webhookRetry?: { baseDelayMs?: number; maxAttempts?: number; timeoutMs?: number };
  log: Logger | false;
  clock?: () => number;
  /** Routes served beside the hub API, such as the web dashboard (dashboard/serve.ts: hubDashboard). */
  plugins?: readonly HubPlugin[];
}

/** What a plugin of the hub (the dashboard) may read, and the guard reads go through. */
export interface HubPluginContext {
  guard: preHandlerHookHandler | undefined;
  overview(): DashboardOverview;
  devices(query: string, limit: number): DeviceSearch;
}

export type HubPlugin = (app: FastifyInstance, hub: HubPluginContext) => void;

export interface RunningHub {
  url: string;
  fleet(): FleetView;
  /** A commit by sha or unique prefix; null when the hub never saw it. */
  revision(sha: string): RevisionView | null;
  /** Resolves when no webhook delivery is in flight (tests). */
  webhooksIdle(): Promise<void>;
  close(): Promise<void>;
}

/** Where the CLI reads it without loading the hub (protocol/hub-summary.ts). */
export { DEFAULT_STALE_AFTER_MS };
const DEFAULT_REVISIONS_LISTED = 20;
const MAX_REVISIONS_LISTED = 200;

declare module 'fastify' {
  interface FastifyRequest {
    rawBody?: string;
  }
}

/** The cloud view: regions push summaries, operators and the dashboard read the fleet. */
export async function startHub(config: HubConfig): Promise<RunningHub> {
  if (!config.token) throw new CascadeError('hub-token-required', 'the hub needs a secret: set --token (or CASCADE_HUB_TOKEN)');
  for (const url of config.webhooks ?? []) {
    if (!/^https?:\/\//.test(url)) throw new CascadeError('webhook-url-invalid', `--webhook ${url}: use an http:// or https:// URL`);
  }
  const clock = config.clock ?? Date.now;
  const log = config.log;
  const staleAfterMs = config.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const store = HubStore.open(config.dataDir);
  const metrics = createHubMetrics();
  const dispatcher = new WebhookDispatcher({
    store,
    log,
    clock,
    secret: config.webhookSecret ?? null,
    baseDelayMs: config.webhookRetry?.baseDelayMs,
    maxAttempts: config.webhookRetry?.maxAttempts,
    timeoutMs: config.webhookRetry?.timeoutMs,
    onResult: (result) => metrics.webhookDeliveries.inc({ result }),
  });
  const tracker = new FleetTracker({ store, clock, staleAfterMs, webhooks: config.webhooks ?? [], onEventsQueued: () => dispatcher.kick(), log });

  const events = new HubEvents(clock);
  const app = createRegionHttpServer({ log, bodyLimit: MAX_SUMMARY_BYTES });
  registerRawJsonParser(app);
  const guard = createReadGuard({ readToken: config.readToken ?? null, hubToken: config.token });
  const preHandler = guard ? [guard] : [];

  const authenticateRegion = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const { region } = request.params as { region: string };
    if (!isValidRegionName(region)) {
      throw new HttpError(400, 'region-name-invalid', `region name '${region.slice(0, 100)}' is invalid: use 1-63 letters, digits or '._-', starting with a letter or digit`);
    }
    const token = bearerToken(request.headers.authorization);
    if (token === null) {
      void reply.header('www-authenticate', 'Bearer');
      throw new HttpError(401, 'region-token-missing', `send the token of region ${region} as Authorization: Bearer <token> (print it with \`cascade hub region-token ${region}\`)`);
    }
    if (!secretsEqual(token, regionToken(config.token, region))) {
      void reply.header('www-authenticate', 'Bearer error="invalid_token"');
      throw new HttpError(403, 'region-token-invalid', `this token is not the token of region ${region}: a region may only report as itself (print its token with \`cascade hub region-token ${region}\`)`);
    }
    const signature = request.headers[SIGNATURE_HEADER];
    if (typeof signature !== 'string' || request.rawBody === undefined || !secretsEqual(signature, signBody(token, request.rawBody))) {
      throw new HttpError(401, 'summary-signature-invalid', `${SIGNATURE_HEADER} must be sha256=<hex HMAC-SHA256 of the body, keyed with the region token>`);
    }
  };

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/metrics', { preHandler }, async (_request, reply) => {
    const fleet = tracker.fleet();
    const stale = fleet.regions.filter((r) => r.stale).length;
    metrics.regions.set({ state: 'stale' }, stale);
    metrics.regions.set({ state: 'fresh' }, fleet.regions.length - stale);
    metrics.webhookPending.set(store.pendingEvents());
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.post<{ Params: { region: string }; Body: HubSummary }>(
    '/api/v1/regions/:region/summary',
    {
      schema: { body: hubSummarySchema },
      preValidation: [authenticateRegion],
      // A rejected push counts as such whatever stage refused it.
      onError: async () => {
        metrics.summaries.inc({ result: 'rejected' });
      },
    },
    async (request, reply) => {
      const { region } = request.params;
      const summary = request.body;
      if (summary.region !== region) {
        throw new HttpError(400, 'region-mismatch', `the summary says region '${summary.region}' but was pushed to ${request.url}; a region may only report as itself`);
      }
      const previous = tracker.regions().find((r) => r.summary.region === region)?.summary ?? null;
      const result = tracker.accept(summary);
      if (result.accepted) events.summaryAccepted(previous, summary);
      if (!result.accepted) {
        metrics.summaries.inc({ result: 'old' });
        return reply.code(409).send({
          error: { code: 'summary-sequence-old', message: `sequence ${summary.sequence} is not newer than ${result.lastSequence}, the last summary of region ${region}; send a higher sequence` },
          lastSequence: result.lastSequence,
        });
      }
      metrics.summaries.inc({ result: 'accepted' });
      return { ok: true, sequence: summary.sequence };
    },
  );

  app.get('/api/v1/fleet', { preHandler }, async () => tracker.fleet());
  // What the hub learns from summaries, as Server-Sent Events (or ?format=json): revisions, rollouts, halts.
  app.get(EVENTS_PATH, { preHandler }, async (request, reply) => events.stream.serve(request, reply) ?? reply);
  app.get<{ Querystring: { limit?: string } }>('/api/v1/revisions', { preHandler }, async (request) => {
    const asked = Number(request.query.limit ?? DEFAULT_REVISIONS_LISTED);
    const limit = Number.isInteger(asked) && asked > 0 ? Math.min(asked, MAX_REVISIONS_LISTED) : DEFAULT_REVISIONS_LISTED;
    return { revisions: tracker.recentRevisions(limit) };
  });
  app.get<{ Params: { sha: string } }>('/api/v1/revisions/:sha', { preHandler }, async (request) => {
    const { sha } = request.params;
    if (!/^[0-9a-fA-F]{4,64}$/.test(sha)) throw new HttpError(400, 'revision-invalid', `'${sha.slice(0, 80)}' is not a commit id: use 4-64 hex digits`);
    const view = tracker.revision(sha);
    if (!view) throw new HttpError(404, 'revision-unknown', `no region has reported commit ${sha} (or the prefix is ambiguous); list known commits with GET /api/v1/revisions`);
    return view;
  });

  const pluginContext: HubPluginContext = {
    guard,
    overview: () => {
      const fleet = tracker.fleet();
      return { mode: 'hub', at: fleet.at, staleAfterMs, regions: fleet.regions, revisions: tracker.recentRevisions(DEFAULT_REVISIONS_LISTED) };
    },
    devices: (query, limit) => tracker.devices(query, limit),
  };
  for (const plugin of config.plugins ?? []) plugin(app, pluginContext);

  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    events.close();
    store.close();
    throw new CascadeError('hub-listen-failed', `cannot listen on ${config.host}:${config.port}: ${(err as Error).message} (check --listen)`, undefined, { cause: err });
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  if (log) {
    log.info(
      { url, regions: tracker.regions().length, webhooks: config.webhooks?.length ?? 0, reads: guard ? 'read token' : 'open' },
      `hub listening on ${url}`,
    );
  }
  // Events left undelivered by a previous run.
  dispatcher.kick();

  // Staleness is computed on every read; this only says in the log when a region falls silent or returns.
  const staleRegions = new Set<string>();
  const watchStale = setInterval(() => {
    for (const region of tracker.fleet().regions) {
      if (region.stale && !staleRegions.has(region.region)) {
        staleRegions.add(region.region);
        if (log) log.warn({ region: region.region, receivedAt: region.receivedAt }, `region ${region.region} is stale: no summary for over ${staleAfterMs} ms`);
      } else if (!region.stale && staleRegions.delete(region.region) && log) {
        log.info({ region: region.region }, `region ${region.region} reports again`);
      }
    }
  }, Math.max(1_000, Math.floor(staleAfterMs / 4)));
  watchStale.unref();

  return {
    url,
    fleet: () => tracker.fleet(),
    revision: (sha) => tracker.revision(sha),
    webhooksIdle: () => dispatcher.idle(),
    async close() {
      clearInterval(watchStale);
      events.close();
      await dispatcher.close();
      await app.close();
      store.close();
    },
  };
}

/** JSON bodies keep their raw text, so the signature is checked over exactly the bytes sent. */
function registerRawJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    request.rawBody = text;
    if (text.trim() === '') {
      done(new HttpError(400, 'invalid-json', 'request body is empty; send a JSON object'), undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new HttpError(400, 'invalid-json', 'request body is not valid JSON'), undefined);
    }
  });
}
