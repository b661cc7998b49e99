import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify';
import type { AppReport, DeviceId, InventoryDevice, Labels } from '../../core/types.js';
import {
  deviceParamsSchema,
  desiredQuerySchema,
  enrollRequestSchema,
  reportRequestSchema,
} from '../../protocol/schemas.js';
import {
  MAX_WAIT_SECONDS,
  apiPaths,
  errorCodes,
  type DesiredResponse,
  type EnrollRequest,
  type EnrollResponse,
  type ReportRequest,
} from '../../protocol/types.js';
import { isValidDeviceId, labelsProblem } from '../../protocol/validate.js';
import type { DesiredWatchers } from './desired-watchers.js';
import { DesiredDocuments, desiredResponse, type DesiredDecorator } from '../desired-document.js';
import { hashDeviceToken, issueDeviceToken, secretsEqual } from '../device-tokens.js';
import { drainLongPolls, entityTags, etagOf, holdLongPoll, isUnchanged, type LongPolls } from './long-poll.js';
import { HttpError } from '../../http/http-server.js';
import type { StateStore } from '../../reconciler/state-store.js';
import type { DeviceIdentity } from '../device-identity.js';
import type { ReportOrder } from '../report-order.js';
import { registerIdentityRoutes } from './identity-routes.js';

export interface DeviceApiDeps {
  store: StateStore;
  /** Name of this region, echoed to devices and in the inventory. */
  region: string;
  /** Shared secret devices need to enrol; null = open enrolment (any device may enrol). */
  enrollmentToken: string | null;
  watchers: DesiredWatchers;
  /** Epoch ms, for timestamps stored with enrolments and reports. */
  clock: () => number;
  /** Called after a device (re-)enrolled, e.g. to hand it its desired state at once. */
  onEnroll?: (deviceId: DeviceId) => void;
  /**
   * Called with the token issued at enrolment, the only moment the region sees it in plain text,
   * e.g. to give the device the same secret as its MQTT password. Runs before the answer is sent.
   */
  onTokenIssued?: (deviceId: DeviceId, token: string) => void;
  /** Called after a device reported, e.g. to re-evaluate a rollout. */
  onReport?: (deviceId: DeviceId) => void;
  /** Runs before operator routes (the inventory); open when absent. */
  operatorGuard?: preHandlerHookHandler;
  /** Key-bound identity and the enrolment policy (device-identity.ts); without it any enrolment with the token succeeds. */
  identity?: DeviceIdentity;
  /** Drops replayed and overtaken reports (report-order.ts). */
  reportOrder?: ReportOrder;
  /** Adds to each app's desired state (the artifact relay). */
  decorateDesired?: DesiredDecorator;
}



interface DeviceParams {
  id: string;
}

function checkDeviceId(id: string): void {
  if (!isValidDeviceId(id)) {
    throw new HttpError(400, errorCodes.deviceIdInvalid, `device id '${id.slice(0, 140)}' is invalid: use 1-128 letters, digits or '._:-', starting with a letter or digit`);
  }
}

function checkLabels(labels: Labels | undefined): void {
  if (labels === undefined) return;
  const problem = labelsProblem(labels);
  if (problem) throw new HttpError(400, errorCodes.labelsInvalid, `labels: ${problem}`);
}



/** The device endpoints of the wire protocol (src/protocol/types.ts) on the region's server. */
export function registerDeviceApi(app: FastifyInstance, deps: DeviceApiDeps): void {
  if (deps.identity) registerIdentityRoutes(app, { ...deps, identity: deps.identity });
  const { store, watchers } = deps;

  function callHook(hook: ((deviceId: DeviceId) => void) | undefined, deviceId: DeviceId, request: FastifyRequest, what: string): void {
    if (!hook) return;
    try {
      hook(deviceId);
    } catch (err) {
      request.log.error({ err, deviceId }, `${what} hook failed`);
    }
  }

  /** Checks `Authorization: Bearer <device token>` belongs to the device in the path. */
  const authenticateDevice = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const { id } = request.params as DeviceParams;
    checkDeviceId(id);
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) {
      void reply.header('www-authenticate', 'Bearer');
      throw new HttpError(401, errorCodes.deviceTokenMissing, 'send the device token from enrolment as Authorization: Bearer <token>');
    }
    const tokenHash = hashDeviceToken(match[1]!);
    const owner = store.deviceIdForTokenHash(tokenHash);
    if (owner === null) {
      void reply.header('www-authenticate', 'Bearer error="invalid_token"');
      throw new HttpError(401, errorCodes.deviceTokenInvalid, 'the device token is not valid (unknown, replaced by a newer enrolment, or revoked): enrol the device again');
    }
    const stored = store.getTokenHash(id);
    if (owner !== id || stored === null || !timingSafeEqual(Buffer.from(stored, 'hex'), Buffer.from(tokenHash, 'hex'))) {
      throw new HttpError(403, errorCodes.deviceMismatch, `this token belongs to device ${owner}; a device may only read and report for itself, not for ${id}`);
    }
  };

  app.post<{ Body: EnrollRequest }>(apiPaths.enroll, { schema: { body: enrollRequestSchema } }, async (request, reply) => {
    const { deviceId, labels, enrollmentToken } = request.body;
    checkDeviceId(deviceId);
    checkLabels(labels);
    if (deps.enrollmentToken !== null && (enrollmentToken === undefined || !secretsEqual(enrollmentToken, deps.enrollmentToken))) {
      throw new HttpError(
        401,
        errorCodes.enrollmentTokenInvalid,
        enrollmentToken === undefined
          ? `device ${deviceId}: this region needs an enrollment token (agent flag --enrollment-token)`
          : `device ${deviceId}: the enrollment token is wrong; use the one the region was started with`,
      );
    }
    const existing = store.getDevice(deviceId);
    if (existing?.revoked) {
      throw new HttpError(403, 'device-revoked', `device ${deviceId} was revoked and cannot enrol again with that id`);
    }
    const decision = deps.identity?.decide(request.body, existing, request.log);
    if (decision?.kind === 'pending') return reply.code(202).send(decision.answer);
    const token = issueDeviceToken();
    store.enrollDevice(deviceId, labels, hashDeviceToken(token), deps.clock());
    if (decision) deps.identity!.enrolled(deviceId, decision);
    if (deps.onTokenIssued) {
      try {
        deps.onTokenIssued(deviceId, token);
      } catch (err) {
        request.log.error({ err, deviceId }, 'onTokenIssued hook failed');
      }
    }
    // Enrolments are written in batches (one transaction for all of a few milliseconds): the token is
    // answered only once its device is durable.
    await store.whenWritten?.();
    request.log.info({ deviceId, reenrolled: existing !== null }, 'device enrolled');
    callHook(deps.onEnroll, deviceId, request, 'onEnroll');
    const answer: EnrollResponse = { deviceId, region: deps.region, token };
    return reply.code(201).send(answer);
  });

  app.post<{ Params: DeviceParams; Body: ReportRequest }>(
    '/api/v1/devices/:id/report',
    { schema: { params: deviceParamsSchema, body: reportRequestSchema }, preHandler: authenticateDevice },
    async (request) => {
      const { id } = request.params;
      checkLabels(request.body.labels);
      if (deps.reportOrder && !deps.reportOrder.accept(id, request.body.seq, 'http')) return { ok: true };
      store.recordReport(id, request.body.apps as Record<string, AppReport>, deps.clock(), request.body.labels);
      callHook(deps.onReport, id, request, 'onReport');
      return { ok: true };
    },
  );

  // Serialized once per distinct content, as over MQTT (per device where the relay adds to it).
  const documents = new DesiredDocuments(store, deps.region, deps.decorateDesired);

  function generationOf(id: DeviceId): number {
    return store.getHanded(id)?.generation ?? 0;
  }

  /** Long polls held open (their responses not closed yet); closing the server waits for them. */
  const polls: LongPolls = { open: 0, drained: null, store, watchers, clock: deps.clock, generationOf, answer };

  app.get<{ Params: DeviceParams; Querystring: { wait?: string } }>(
    '/api/v1/devices/:id/desired',
    { schema: { params: deviceParamsSchema, querystring: desiredQuerySchema }, preHandler: authenticateDevice },
    // Not async: a held poll is answered later from a timer or a notify, so no promise or async
    // frame stays alive per waiting device, only its HeldPoll.
    (request, reply: FastifyReply) => {
      const { id } = request.params;
      const waitSeconds = request.query.wait === undefined ? 0 : Number(request.query.wait);
      if (waitSeconds > MAX_WAIT_SECONDS) {
        throw new HttpError(400, errorCodes.invalidQuery, `wait=${waitSeconds} is too long: at most ${MAX_WAIT_SECONDS} seconds`);
      }
      void reply.header('cache-control', 'no-store');
      // A device that polls is online, even with nothing new to report.
      store.markSeen(id, deps.clock());
      const known = entityTags(request.headers['if-none-match']);
      const generation = generationOf(id);

      // (A client gone already gets no 'close' event any more: answer it at once.)
      if (waitSeconds > 0 && isUnchanged(known, generation) && !watchers.isClosed && !reply.raw.closed) {
        if (holdLongPoll(polls, id, generation, reply, known, waitSeconds * 1000)) {
          return;
        }
      }
      answer(reply, id, known, generation, waitSeconds > 0);
    },
  );

  /** 304 while the device has what its ETag says, else 200 with its desired state. */
  function answer(reply: FastifyReply, id: DeviceId, known: string[], generation: number, waited: boolean): void {
    if (waited) store.markSeen(id, deps.clock());
    if (isUnchanged(known, generation)) {
      void reply.code(304).header('etag', etagOf(generation)).send();
      return;
    }
    const body = documents.message(id);
    void reply.code(200).header('etag', etagOf(body.generation)).type('application/json; charset=utf-8').send(body.payload);
  }

  // Let open long polls answer (304) before fastify drops every connection.
  app.addHook('preClose', () => drainLongPolls(polls));

  app.get(apiPaths.devices, { preHandler: deps.operatorGuard ? [deps.operatorGuard] : [] }, async () => {
    const inventory: InventoryDevice[] = [];
    for (const device of store.listDevices()) {
      if (device.revoked) continue;
      const apps: Record<string, string> = {};
      for (const [name, report] of Object.entries(device.apps)) {
        if (report.version !== null) apps[name] = report.version;
      }
      inventory.push({ id: device.id, region: deps.region, labels: device.labels, apps });
    }
    return inventory;
  });
}
