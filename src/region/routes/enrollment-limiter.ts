import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { apiPaths } from '../../protocol/types.js';

export interface EnrollmentLimits {
  /** Failed enrolments one address may make per window before it is refused. */
  failuresPerAddress: number;
  /** Failed enrolments in total per window, whatever the address (a distributed guess). */
  failuresTotal: number;
  windowMs: number;
  /**
   * While the region's event loop runs this late (ms), sample after sample (`lagMs`: the least lateness of
   * its last three 20 ms samples, so one stall such as start-up's is not "busy"), enrolments get 503 with
   * Retry-After instead of queueing until devices time out: a fleet enrolling at once on a busy region is
   * slowed, not failed. 0: never. Default 500.
   */
  busyLagMs?: number;
  /** The Retry-After of those 503s, in seconds (devices add jitter). Default 2. */
  busyRetryAfterSeconds?: number;
}

export const DEFAULT_ENROLLMENT_LIMITS: EnrollmentLimits = { failuresPerAddress: 10, failuresTotal: 100, windowMs: 60_000, busyLagMs: 500, busyRetryAfterSeconds: 2 };

/**
 * Rate-limits enrolment attempts where it matters: guessing the enrolment token. Failed attempts
 * (401) are counted per address and in total over a sliding window; past the limit, enrolments
 * from that address (or from anyone, for the total) get 429 with Retry-After until the window
 * moves on. Successful enrolments are not limited, so a fleet can enrol at full speed, except while the
 * region is behind (`lagMs` at or over `busyLagMs`): then enrolments get 503 with Retry-After, which agents
 * wait out with jitter. Register it before the enrolment route: the hooks are that route's own.
 */
export function limitEnrollment(app: FastifyInstance, clock: () => number, limits: EnrollmentLimits = DEFAULT_ENROLLMENT_LIMITS, lagMs: () => number = () => 0): void {
  const busyLagMs = limits.busyLagMs ?? 0;
  const busyRetryAfter = String(limits.busyRetryAfterSeconds ?? 2);
  const failures = new Map<string, number[]>();
  let total: number[] = [];
  const recent = (times: number[], now: number) => times.filter((t) => now - t < limits.windowMs);

  const onRequest = async (request: FastifyRequest, reply: FastifyReply) => {
    if (busyLagMs > 0 && lagMs() >= busyLagMs) {
      return reply
        .code(503)
        .header('retry-after', busyRetryAfter)
        .send({ error: { code: 'region-busy', message: `the region is busy (its event loop runs ${Math.round(lagMs())} ms late); enrol again in ${busyRetryAfter} s` } });
    }
    const now = clock();
    total = recent(total, now);
    const mine = recent(failures.get(request.ip) ?? [], now);
    if (mine.length) failures.set(request.ip, mine);
    else failures.delete(request.ip);
    const blocking = mine.length >= limits.failuresPerAddress ? mine : total.length >= limits.failuresTotal ? total : null;
    if (blocking) {
      const retryAfter = Math.ceil((limits.windowMs - (now - blocking[0]!)) / 1000);
      return reply
        .code(429)
        .header('retry-after', String(retryAfter))
        .send({ error: { code: 'enrollment-rate-limited', message: `too many failed enrolments${blocking === total ? '' : ` from ${request.ip}`}; retry in ${retryAfter} s with the right enrolment token` } });
    }
  };
  const onResponse = async (request: FastifyRequest, reply: FastifyReply) => {
    if (reply.statusCode !== 401) return;
    const now = clock();
    failures.set(request.ip, [...recent(failures.get(request.ip) ?? [], now), now]);
    total.push(now);
  };
  // Hooks of the enrolment route alone (registered after this): the polls and reports of thousands of
  // devices do not pay two promises each for a check that is never theirs.
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (route.url !== apiPaths.enroll || !methods.includes('POST')) return;
    route.onRequest = [...asArray(route.onRequest), onRequest];
    route.onResponse = [...asArray(route.onResponse), onResponse];
  });
}

function asArray<T>(value: T | T[] | undefined): T[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}
