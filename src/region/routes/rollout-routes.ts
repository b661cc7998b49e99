import type { FastifyInstance, preHandlerHookHandler } from 'fastify';
import { HttpError } from '../../http/http-server.js';
import type { DeploymentRolloutStatus } from '../../protocol/rollout-status.js';

export interface RolloutRoutesDeps {
  rollouts(): DeploymentRolloutStatus[];
  /** Records the retry (it survives a restart until a pass takes it) and runs a pass. */
  retry(deployment: string): Promise<void>;
  operatorGuard: preHandlerHookHandler;
}

/**
 * `POST /api/v1/rollouts/:deployment/retry` (operator token; `cascade rollout retry`): re-attempts the
 * failed devices of a Halted rollout once, for when the cause was outside the version (a full disk,
 * a registry that was down). The halt is lifted for exactly those devices; if they fail again, the
 * rollout halts again. 404 for a Deployment this region does not roll out, 409 when it is not Halted.
 */
export function registerRolloutRoutes(app: FastifyInstance, deps: RolloutRoutesDeps): void {
  app.post<{ Params: { deployment: string } }>('/api/v1/rollouts/:deployment/retry', { preHandler: [deps.operatorGuard] }, async (request) => {
    const { deployment } = request.params;
    const before = deps.rollouts().find((r) => r.deployment === deployment);
    if (!before) throw new HttpError(404, 'rollout-unknown', `this region rolls out no Deployment named ${JSON.stringify(deployment.slice(0, 200))}`);
    if (before.state !== 'Halted') {
      throw new HttpError(409, 'rollout-not-halted', `the rollout of ${deployment} ${before.version} is ${before.state}, not Halted: there is nothing to retry`);
    }
    await deps.retry(deployment);
    const after = deps.rollouts().find((r) => r.deployment === deployment);
    const retried = after?.retry && after.retry.at >= (before.halted?.at ?? 0) ? after.retry : null;
    request.log.warn({ deployment, version: before.version, devices: retried?.count ?? 0 }, `operator retry of ${deployment} ${before.version}`);
    return {
      deployment,
      version: before.version,
      state: after?.state ?? before.state,
      /** The first MAX_HALTED_DEVICES re-attempted; `count` says how many in all. */
      devices: retried?.devices ?? [],
      count: retried?.count ?? 0,
      retry: after?.retry ?? null,
    };
  });
}
