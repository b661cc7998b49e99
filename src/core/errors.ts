/**
 * Every error Cascade shows a user is a CascadeError: a stable `code` that
 * scripts and tests can match on, and a message that says where and what to do.
 */
export class CascadeError extends Error {
  readonly code: string;
  readonly details?: Record<string, unknown>;

  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'CascadeError';
    this.code = code;
    this.details = details;
  }
}

export function isCascadeError(err: unknown): err is CascadeError {
  return err instanceof CascadeError;
}
