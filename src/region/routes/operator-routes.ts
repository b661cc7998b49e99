import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyInstance, preHandlerHookHandler } from 'fastify';
import type { StateStore } from '../../reconciler/state-store.js';
import { HttpError } from '../../http/http-server.js';

export interface OperatorApiDeps {
  store: StateStore;
  /** Bearer token of operators; null leaves the operator API open (lab use), as the region logs at start. */
  operatorToken: string | null;
  clock: () => number;
  /** After a revocation, e.g. to end the device's open polls and broker session. */
  onRevoke?: (deviceId: string) => void;
}

/** Checks `Authorization: Bearer <operator token>`; comparing hashes keeps the comparison constant-time. */
export function operatorGuard(operatorToken: string | null): preHandlerHookHandler {
  const expected = operatorToken === null ? null : createHash('sha256').update(operatorToken).digest();
  return async (request) => {
    if (expected === null) return;
    const header = request.headers.authorization ?? '';
    const presented = header.startsWith('Bearer ') ? header.slice(7) : '';
    const ok = presented !== '' && timingSafeEqual(createHash('sha256').update(presented).digest(), expected);
    if (!ok) throw new HttpError(401, 'operator-token-invalid', 'this endpoint needs the operator token: Authorization: Bearer <token> (cascade devices --operator-token, or CASCADE_OPERATOR_TOKEN)');
  };
}

/** Device administration for operators: list devices with their enrolment, revoke one. */
export function registerOperatorApi(app: FastifyInstance, deps: OperatorApiDeps): void {
  const guard = operatorGuard(deps.operatorToken);
  app.get('/api/v1/admin/devices', { preHandler: guard }, async () =>
    deps.store.listDevices().map((d) => ({ id: d.id, labels: d.labels, enrolledAt: d.enrolledAt, lastSeen: d.lastSeen, revoked: d.revoked })),
  );
  app.post<{ Params: { id: string } }>('/api/v1/admin/devices/:id/revoke', { preHandler: guard }, async (request) => {
    const { id } = request.params;
    if (!deps.store.revokeDevice(id, deps.clock())) throw new HttpError(404, 'device-unknown', `no device ${id} is enrolled in this region`);
    deps.onRevoke?.(id);
    request.log.warn({ deviceId: id }, 'device revoked');
    return { id, revoked: true };
  });
}
