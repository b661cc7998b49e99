import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { CascadeError } from '../core/errors.js';
import { MAX_BODY_BYTES, errorCodes, type ErrorBody } from '../protocol/types.js';

/** An error a route throws to answer with this status and `{ error: { code, message } }`. */
export class HttpError extends CascadeError {
  readonly status: number;

  constructor(status: number, code: string, message: string) {
    super(code, message, { status }, { retry: status >= 500 || status === 429 ? 'temporary' : 'final' });
    this.name = 'HttpError';
    this.status = status;
  }
}

export interface RegionHttpServerOptions {
  /** Serve HTTPS with this certificate and key (PEM). */
  https?: { cert: Buffer; key: Buffer };
  /** pino logger of the region; false for none (tests). */
  log: Logger | false;
  bodyLimit?: number;
  /** Connection timeouts (HTTP_TIMEOUTS by default). */
  timeouts?: Partial<HttpTimeouts>;
}

export interface HttpTimeouts {
  /** The request line and headers must arrive within this (a slow-header, "slowloris", connection is closed). */
  headersMs: number;
  /** The whole request, body included, must arrive within this. Answers (long polls) are not limited by it. */
  requestMs: number;
  /** A socket with no traffic at all this long is closed; longer than the longest long poll and keep-alive. */
  idleMs: number;
  /** How often the server looks for connections past `headersMs` or `requestMs`. */
  checkEveryMs: number;
}

/**
 * Every server of Cascade closes a connection that sends its headers too slowly, takes too long over
 * its body, or says nothing at all: a few hundred slow connections must not tie a region up.
 */
export const HTTP_TIMEOUTS: HttpTimeouts = {
  headersMs: 10_000,
  requestMs: 30_000,
  idleMs: 120_000,
  checkEveryMs: 2_000,
};

/**
 * Connections the kernel may hold accepted but not yet taken by the server (listen(2)'s backlog; Linux caps it
 * at net.core.somaxconn). Node's 511 overflows when thousands of devices reconnect at once (a restart, a commit
 * that answers every long poll): the handshakes past it are dropped and retried by the devices after 1, 3, 7 s,
 * or time out.
 */
export const LISTEN_BACKLOG = 4096;

interface AjvError {
  keyword: string;
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
  propertyName?: string;
}

/** Says which field is wrong and how, e.g. `body/apps/web: unknown field 'colour'`. */
function describeValidation(context: string, errors: AjvError[]): string {
  const first = errors[0];
  if (!first) return `${context} is invalid`;
  const where = `${context}${first.instancePath ?? ''}`;
  const params = first.params ?? {};
  if (first.keyword === 'additionalProperties') return `${where}: unknown field '${String(params.additionalProperty)}'`;
  if (first.keyword === 'required') return `${where}: missing required field '${String(params.missingProperty)}'`;
  if (first.propertyName !== undefined) return `${where}: key '${first.propertyName}' ${first.message ?? 'is invalid'}`;
  if (first.keyword === 'enum' && Array.isArray(params.allowedValues)) {
    return `${where} must be one of ${params.allowedValues.map((value) => `'${String(value)}'`).join(', ')}`;
  }
  return `${where} ${first.message ?? 'is invalid'}`;
}

function toErrorAnswer(err: FastifyError & { validationContext?: string }, bodyLimit: number): { status: number; code: string; message: string } {
  if (err instanceof HttpError) return { status: err.status, code: err.code, message: err.message };
  if (err.validation) {
    const context = err.validationContext ?? 'request';
    const code = context === 'querystring' ? errorCodes.invalidQuery : context === 'body' ? errorCodes.invalidBody : 'invalid-request';
    return { status: 400, code, message: describeValidation(context, err.validation as AjvError[]) };
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: errorCodes.bodyTooLarge, message: `request body is larger than ${bodyLimit} bytes` };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { status: 400, code: errorCodes.invalidJson, message: 'request body is not valid JSON' };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, code: errorCodes.invalidJson, message: 'request body is empty; send a JSON object' };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, code: errorCodes.unsupportedMediaType, message: 'send the body as Content-Type: application/json' };
    default:
      break;
  }
  // Protocol poisoning and other parser errors fastify raises carry a 4xx status.
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return { status: err.statusCode, code: 'bad-request', message: err.message };
  }
  return { status: 500, code: errorCodes.internal, message: 'internal error in the region; see its log' };
}

/**
 * The region's HTTP server: JSON everywhere, every error as `{ error: { code, message } }`.
 * The device API (device-api.ts) and the operator routes register on the same instance.
 */
export function createRegionHttpServer(opts: RegionHttpServerOptions): FastifyInstance {
  const bodyLimit = opts.bodyLimit ?? MAX_BODY_BYTES;
  const timeouts = { ...HTTP_TIMEOUTS, ...opts.timeouts };
  const serverTimeouts = { headersTimeout: timeouts.headersMs, requestTimeout: timeouts.requestMs, connectionsCheckingInterval: timeouts.checkEveryMs };
  const app = Fastify({
    ...(opts.log ? { loggerInstance: opts.log } : { logger: false }),
    bodyLimit,
    // Thousands of devices poll constantly; per-request log lines would drown everything else.
    logController: new LogController({ disableRequestLogging: true }),
    // Requests log through the server's own logger: a pino child per request (its bound log methods
    // and formatters, ~1 KB) would be kept alive by each of thousands of held long polls. Lines
    // about a failed request name its id themselves.
    childLoggerFactory: (logger) => logger,
    // Longer than any long poll, so a device's socket survives between polls.
    keepAliveTimeout: 75_000,
    // Open long polls and idle keep-alive sockets must not hold `close()` up.
    forceCloseConnections: true,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 1024 },
    requestTimeout: timeouts.requestMs,
    connectionTimeout: timeouts.idleMs,
    http: serverTimeouts,
    ...(opts.https ? { https: { ...opts.https, ...serverTimeouts } } : {}),
    ajv: {
      // Reject what is wrong instead of quietly fixing it: unknown fields and wrong types are errors.
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false },
    },
  }) as unknown as FastifyInstance;

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const answer = toErrorAnswer(err, bodyLimit);
    if (answer.status >= 500) request.log.error({ err, reqId: request.id, url: request.url }, 'request failed');
    const body: ErrorBody = { error: { code: answer.code, message: answer.message } };
    void reply.code(answer.status).type('application/json').send(body);
  });

  app.setNotFoundHandler((request, reply) => {
    const body: ErrorBody = { error: { code: errorCodes.notFound, message: `no route ${request.method} ${request.url.split('?')[0]}` } };
    void reply.code(404).send(body);
  });

  return app;
}
