import type { FastifyInstance } from 'fastify';
import type { DeviceId } from '../../core/types.js';
import { deviceParamsSchema, renewTokenRequestSchema } from '../../protocol/schemas.js';
import { errorCodes, type EnrollResponse, type RenewTokenRequest } from '../../protocol/types.js';
import { isValidDeviceId } from '../../protocol/validate.js';
import { HttpError } from '../../http/http-server.js';
import type { StateStore } from '../../reconciler/state-store.js';
import type { DeviceIdentity } from '../device-identity.js';
import { hashDeviceToken, issueDeviceToken } from '../device-tokens.js';

export interface IdentityRoutesDeps {
  store: StateStore;
  region: string;
  identity: DeviceIdentity;
  clock: () => number;
  onTokenIssued?: (deviceId: DeviceId, token: string) => void;
}

/**
 * The two device endpoints of key-bound identity:
 * - `POST /api/v1/devices/:id/challenge`: a single-use nonce to sign (no authentication: the nonce
 *   is worthless without the device key).
 * - `POST /api/v1/devices/:id/token`: a new device token for a proof made with the id's key over
 *   that nonce; the old token stops working. A device renews its token this way without the
 *   enrolment token.
 */
export function registerIdentityRoutes(app: FastifyInstance, deps: IdentityRoutesDeps): void {
  const checkId = (id: string) => {
    if (!isValidDeviceId(id)) throw new HttpError(400, errorCodes.deviceIdInvalid, `device id '${id.slice(0, 140)}' is invalid: use 1-128 letters, digits or '._:-', starting with a letter or digit`);
  };
  app.post<{ Params: { id: string } }>('/api/v1/devices/:id/challenge', { schema: { params: deviceParamsSchema } }, async (request, reply) => {
    checkId(request.params.id);
    void reply.header('cache-control', 'no-store');
    return deps.identity.challenge(request.params.id);
  });
  app.post<{ Params: { id: string }; Body: RenewTokenRequest }>(
    '/api/v1/devices/:id/token',
    { schema: { params: deviceParamsSchema, body: renewTokenRequestSchema } },
    async (request, reply) => {
      const { id } = request.params;
      checkId(id);
      const existing = deps.store.getDevice(id);
      deps.identity.checkRenewal(id, existing, request.body.proof, request.log);
      const token = issueDeviceToken();
      deps.store.enrollDevice(id, existing!.labels, hashDeviceToken(token), deps.clock());
      try {
        deps.onTokenIssued?.(id, token);
      } catch (err) {
        request.log.error({ err, deviceId: id }, 'onTokenIssued hook failed');
      }
      await deps.store.whenWritten?.();
      request.log.info({ deviceId: id }, 'device token renewed with a key proof');
      const answer: EnrollResponse = { deviceId: id, region: deps.region, token };
      return reply.code(201).send(answer);
    },
  );
}
