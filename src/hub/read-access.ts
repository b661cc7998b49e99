import type { FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify';
import { HttpError } from '../http/http-server.js';
import { bearerToken, secretsEqual } from '../protocol/hub-auth.js';

export const READ_COOKIE = 'cascade_hub_read';

export interface ReadAccessOptions {
  /** Token that unlocks reads; null = reads are open to anyone who can reach the listen address. */
  readToken: string | null;
  /** The hub's own secret, also accepted for reads (operators). */
  hubToken: string;
}

function cookieValue(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return null;
}

/**
 * Guards the read routes (fleet, revisions, dashboard, metrics) when the hub runs with --read-token.
 * Accepted: `Authorization: Bearer <read token or hub token>`, or the cookie a browser gets by
 * opening the dashboard once with `?token=<read token>` (the hub then redirects to the clean URL).
 * Returns undefined when reads are open.
 */
export function createReadGuard(opts: ReadAccessOptions): preHandlerHookHandler | undefined {
  const { readToken, hubToken } = opts;
  if (readToken === null) return undefined;
  const valid = (token: string | null) => token !== null && (secretsEqual(token, readToken) || secretsEqual(token, hubToken));
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (valid(bearerToken(request.headers.authorization))) return;
    if (valid(cookieValue(request.headers.cookie, READ_COOKIE))) return;
    const url = new URL(request.url, 'http://hub.invalid');
    const queryToken = url.searchParams.get('token');
    if (request.method === 'GET' && valid(queryToken)) {
      url.searchParams.delete('token');
      void reply.header('set-cookie', `${READ_COOKIE}=${encodeURIComponent(queryToken!)}; Path=/; HttpOnly; SameSite=Strict`);
      return reply.redirect(`${url.pathname}${url.search}`, 303);
    }
    void reply.header('www-authenticate', 'Bearer');
    throw new HttpError(
      401,
      'read-token-required',
      'this hub requires a read token: send Authorization: Bearer <token>, or open the dashboard once as /?token=<token>',
    );
  };
}
