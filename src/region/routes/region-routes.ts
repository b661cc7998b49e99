import type { FastifyInstance, preHandlerHookHandler } from 'fastify';
import { HttpError } from '../../http/http-server.js';
import type { Registry } from 'prom-client';
import type { DeploymentRolloutStatus } from '../../protocol/rollout-status.js';
import type { RegionStatus } from '../../protocol/region-status.js';

export interface RegionRoutesDeps {
  status(): RegionStatus;
  rollouts(): DeploymentRolloutStatus[];
  /** Why the region cannot serve yet, or null when it can. */
  notReady(): { reason: string } | null;
  appliedRevision(): string | null;
  /** Brings the gauges that are computed on demand up to date, just before a scrape. */
  refreshMetrics(): void;
  registry: Registry;
  /** Adopts one non-descending head (a rewritten branch) and runs a pass. */
  accept(revision: string): Promise<void>;
  operatorGuard: preHandlerHookHandler;
  /** Asks for a pass that fetches; resolves after it when `wait`. */
  reconcile(reason: string, wait: boolean): Promise<void>;
}

/**
 * The region's own endpoints beside the device and operator APIs: health, readiness, metrics, status,
 * rollouts, and the webhook that asks for a pass.
 */
export function registerRegionRoutes(app: FastifyInstance, deps: RegionRoutesDeps): void {
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_request, reply) => {
    const problem = deps.notReady();
    if (problem) return reply.code(503).send({ ready: false, reason: problem.reason });
    return { ready: true, revision: deps.appliedRevision() };
  });
  app.get('/metrics', async (_request, reply) => {
    deps.refreshMetrics();
    reply.header('content-type', deps.registry.contentType);
    return deps.registry.metrics();
  });
  app.get('/api/v1/status', async () => deps.status());
  app.get('/api/v1/rollouts', async () => deps.rollouts());
  // `cascade region accept REVISION`: the operator adopts a rewritten branch's head without a restart.
  app.post<{ Body: { revision?: unknown } }>('/api/v1/revisions/accept', { preHandler: [deps.operatorGuard] }, async (request) => {
    const revision = request.body?.revision;
    if (typeof revision !== 'string' || !/^[0-9a-f]{40}$/.test(revision)) {
      throw new HttpError(400, 'revision-invalid', 'send {"revision": "<the full 40-hex commit id to adopt>"}');
    }
    await deps.accept(revision);
    const status = deps.status();
    return { accepted: revision, applied: status.revision.applied === revision, revision: status.revision };
  });
  app.post('/api/v1/reconcile', async (request, reply) => {
    const wait = (request.query as Record<string, string | undefined>)['wait'];
    await deps.reconcile('POST /api/v1/reconcile', wait === 'true' || wait === '1');
    return reply.code(202).send({ accepted: true, revision: deps.status().revision });
  });
}
