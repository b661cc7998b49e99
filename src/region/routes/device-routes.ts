import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
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
  type DesiredAppWire,
  type DesiredResponse,
  type EnrollRequest,
  type EnrollResponse,
  type ReportRequest,
} from '../../protocol/types.js';
import { isValidDeviceId, labelsProblem } from '../../protocol/validate.js';
import { DesiredWaiter, type DesiredWatchers } from './desired-watchers.js';
import { HttpError } from '../../http/http-server.js';
import type { StateStore } from '../../reconciler/state-store.js';

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
}

/** A fresh device token: 32 random bytes, base64url. */
export function issueDeviceToken(): string {
  return randomBytes(32).toString('base64url');
}

/** What the region stores instead of a device token. */
export function hashDeviceToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Constant-time comparison of two secrets of any length (hashing first makes the lengths equal). */
function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

/** A device's desired state as the protocol carries it (HTTP `GET .../desired`, MQTT `.../desired`). */
export function desiredResponse(store: StateStore, region: string, id: DeviceId): DesiredResponse {
  const handed = store.getHanded(id);
  const catalog = store.getCatalog();
  const apps: Record<string, DesiredAppWire> = {};
  for (const [name, desired] of Object.entries(handed?.apps ?? {})) {
    const wire: DesiredAppWire = { version: desired.version, deployment: desired.deployment };
    const spec = catalog[name];
    if (spec?.runtime) wire.runtime = spec.runtime;
    const artifact = spec?.artifacts?.[desired.version];
    if (artifact) wire.artifact = artifact;
    if (spec?.healthCheck) wire.healthCheck = spec.healthCheck;
    apps[name] = wire;
  }
  return { device: id, region, revision: handed?.revision ?? null, generation: handed?.generation ?? 0, apps };
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

/** Parses an If-None-Match header into bare entity tags (`*` included). */
function entityTags(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  const text = Array.isArray(header) ? header.join(',') : header;
  return text.split(',').map((tag) => tag.trim().replace(/^W\//, '')).filter((tag) => tag !== '');
}

/** How long closing the server waits for held long polls to be answered. */
const CLOSE_DRAIN_MS = 2_000;

function etagOf(generation: number): string {
  return `"${generation}"`;
}

function isUnchanged(known: string[], generation: number): boolean {
  return known.includes('*') || known.includes(etagOf(generation));
}

/** What held polls share: one object per server, so a poll carries a single reference. */
interface LongPolls {
  /** Held polls whose responses are not closed yet. */
  open: number;
  /** Called when `open` drops to 0 while the server is closing. */
  drained: (() => void) | null;
  readonly store: StateStore;
  readonly watchers: DesiredWatchers;
  readonly clock: () => number;
  readonly generationOf: (id: DeviceId) => number;
  readonly answer: (reply: FastifyReply, id: DeviceId, known: string[], generation: number, waited: boolean) => void;
}

/** A `GET .../desired?wait=N` held until its device's desired state changes or N seconds pass. */
class HeldPoll extends DesiredWaiter {
  constructor(
    deviceId: DeviceId,
    knownGeneration: number,
    readonly reply: FastifyReply,
    /** The entity tags of If-None-Match. */
    readonly known: string[],
    /** performance.now() at which the device gets its 304. */
    readonly deadline: number,
    readonly polls: LongPolls,
  ) {
    super(deviceId, knownGeneration);
  }

  /** Notified, timed out or closing: answer, or wait on when the device's state has not really changed. */
  wake(): void {
    const { polls } = this;
    try {
      const generation = polls.generationOf(this.deviceId);
      if (isUnchanged(this.known, generation) && !polls.watchers.isClosed) {
        this.knownGeneration = generation;
        const remaining = this.deadline - performance.now();
        if (remaining > 0 && polls.watchers.hold(this, remaining)) return;
      }
      polls.answer(this.reply, this.deviceId, this.known, generation, true);
    } catch (err) {
      void this.reply.send(err as Error);
    }
  }
}

const heldPollKey = Symbol('cascade.heldPoll');
type PollResponse = ServerResponse & { [heldPollKey]?: HeldPoll | undefined };

/** The response of a held poll closed: answered, or its client hung up (then stop waiting). Shared by all polls. */
function onPollResponseClose(this: PollResponse): void {
  const poll = this[heldPollKey];
  if (!poll) return;
  this[heldPollKey] = undefined;
  const { polls } = poll;
  if (!this.writableEnded) {
    polls.watchers.cancel(poll);
    try {
      polls.store.markSeen(poll.deviceId, polls.clock());
    } catch (err) {
      poll.reply.log.warn({ err, deviceId: poll.deviceId }, 'cannot record when the device was last seen');
    }
  }
  polls.open--;
  if (polls.open === 0 && polls.drained) {
    polls.drained();
    polls.drained = null;
  }
}

/** The device endpoints of the wire protocol (src/protocol/types.ts) on the region's server. */
export function registerDeviceApi(app: FastifyInstance, deps: DeviceApiDeps): void {
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
    const token = issueDeviceToken();
    store.enrollDevice(deviceId, labels, hashDeviceToken(token), deps.clock());
    if (deps.onTokenIssued) {
      try {
        deps.onTokenIssued(deviceId, token);
      } catch (err) {
        request.log.error({ err, deviceId }, 'onTokenIssued hook failed');
      }
    }
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
      store.recordReport(id, request.body.apps as Record<string, AppReport>, deps.clock(), request.body.labels);
      callHook(deps.onReport, id, request, 'onReport');
      return { ok: true };
    },
  );

  function desiredOf(id: DeviceId): DesiredResponse {
    return desiredResponse(store, deps.region, id);
  }

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
        const poll = new HeldPoll(id, generation, reply, known, performance.now() + waitSeconds * 1000, polls);
        if (watchers.hold(poll, waitSeconds * 1000)) {
          // Stop waiting as soon as the device hangs up, so abandoned polls cost nothing.
          (reply.raw as PollResponse)[heldPollKey] = poll;
          reply.raw.on('close', onPollResponseClose);
          polls.open++;
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
    const body = desiredOf(id);
    void reply.code(200).header('etag', etagOf(body.generation)).send(body);
  }

  // Let open long polls answer (304) before fastify drops every connection.
  app.addHook('preClose', async () => {
    watchers.closeAll();
    if (polls.open === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => (polls.drained = resolve)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_DRAIN_MS))),
    ]);
    clearTimeout(timer);
  });

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
