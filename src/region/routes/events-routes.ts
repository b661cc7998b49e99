import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify';
import type { EventStream } from '../../http/event-stream.js';
import { EVENTS_PATH, isDeviceLevel, type CascadeEvent } from '../../protocol/events.js';

export interface EventRoutesDeps {
  events: EventStream<CascadeEvent>;
  /** The operator guard when the region has an operator token: without it, a client gets no device-level events. */
  operatorGuard: preHandlerHookHandler | null;
}

/**
 * `GET /api/v1/events`: the region's events as Server-Sent Events (or `?format=json`, the buffer
 * once). Revision and rollout events are as open as `/api/v1/status`; events that name devices go
 * only to operators when the region has an operator token, like its device list.
 */
export function registerEventRoutes(app: FastifyInstance, deps: EventRoutesDeps): void {
  app.get(EVENTS_PATH, async (request, reply) => {
    const operator = await isOperator(deps.operatorGuard, request, reply);
    const body = deps.events.serve(request, reply, operator ? undefined : (event) => !isDeviceLevel(event));
    return body === undefined ? reply : body;
  });
}

async function isOperator(guard: preHandlerHookHandler | null, request: FastifyRequest, reply: FastifyReply): Promise<boolean> {
  if (guard === null) return true;
  try {
    // The guard throws for a missing or wrong token; here that only narrows what is sent.
    await (guard as unknown as (request: FastifyRequest, reply: FastifyReply, done: () => void) => Promise<void>)(request, reply, () => {});
    return true;
  } catch {
    return false;
  }
}
