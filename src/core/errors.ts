/**
 * Every error Cascade shows a user is a CascadeError: a stable `code` that scripts and tests match on,
 * a message that says where and what to do, and whether trying again can help (Flux's model):
 * - `final`: the input itself is refused (invalid, unsigned, not a fast-forward, a bad flag). Retrying
 *   the same input gives the same answer, so a refusal sticks until the input changes.
 * - `temporary`: something on the way failed (network, a peer's 5xx, a timeout, a read that may
 *   succeed later). The same input is tried again, with backoff.
 * Subclasses add what their layer needs (HttpError: a status; RegionHttpError: the URL) and keep both.
 */
export type Retry = 'final' | 'temporary';

/** Codes whose errors are temporary unless the thrower says otherwise: a later attempt may succeed. */
export const TEMPORARY_CODES: ReadonlySet<string> = new Set([
  'source-unreachable',
  'source-timeout',
  'git-read',
  'ancestry-unknown',
  'hub-unreachable',
  'mqtt-unreachable',
  'mqtt-timeout',
  'mqtt-closed',
  'mqtt-connect-failed',
  'region-unreachable',
  'region-timeout',
  'region-error',
  'artifact-download-failed',
  'state-database-error',
]);

export interface CascadeErrorOptions {
  /** Defaults to `temporary` for TEMPORARY_CODES, `final` otherwise. */
  retry?: Retry;
  cause?: unknown;
}

export class CascadeError extends Error {
  readonly code: string;
  readonly details?: Record<string, unknown>;
  readonly retry: Retry;

  constructor(code: string, message: string, details?: Record<string, unknown>, options: CascadeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CascadeError';
    this.code = code;
    this.details = details;
    this.retry = options.retry ?? (TEMPORARY_CODES.has(code) ? 'temporary' : 'final');
  }
}

export function isCascadeError(err: unknown): err is CascadeError {
  return err instanceof CascadeError;
}

/** Node's codes for failures of the network or the machine, not of the input. */
const TEMPORARY_SYSTEM_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EBUSY', 'EAGAIN', 'EMFILE', 'ENFILE', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * Whether trying the same thing again may succeed: a CascadeError says so itself; a Node system error
 * (a refused connection, a reset, a full file table) is temporary; anything else, a bug or a refusal,
 * is final.
 */
export function isTemporary(err: unknown): boolean {
  if (err instanceof CascadeError) return err.retry === 'temporary';
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && TEMPORARY_SYSTEM_CODES.has(code);
}
