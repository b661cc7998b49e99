import type { AuthCallback, GitAuth } from 'isomorphic-git';

/**
 * Credentials for a private fleet repository over HTTPS.
 *
 * - `token` alone is sent as basic auth `token:x-oauth-basic`, which GitHub
 *   (personal access and app tokens) and Gitea accept.
 * - `token` with `username` is sent as `username:token`: GitLab (`oauth2` or
 *   any user name), Bitbucket (`x-token-auth`), Azure DevOps (any user name).
 * - `username` and `password` are sent as they are.
 */
export interface GitCredentials {
  username?: string;
  password?: string;
  token?: string;
}

/** The CLI flags and environment variables that carry credentials, for error messages and `--help`. */
export const GIT_AUTH_FLAGS = {
  token: { flag: '--git-token', env: 'CASCADE_GIT_TOKEN' },
  username: { flag: '--git-username', env: 'CASCADE_GIT_USERNAME' },
  password: { flag: '--git-password', env: 'CASCADE_GIT_PASSWORD' },
} as const;

export const GIT_AUTH_HINT =
  `pass ${GIT_AUTH_FLAGS.token.flag} (or set ${GIT_AUTH_FLAGS.token.env}), or ${GIT_AUTH_FLAGS.username.flag} and ` +
  `${GIT_AUTH_FLAGS.password.flag} (or ${GIT_AUTH_FLAGS.username.env} and ${GIT_AUTH_FLAGS.password.env})`;

/** Reads credentials from CASCADE_GIT_TOKEN / CASCADE_GIT_USERNAME / CASCADE_GIT_PASSWORD; undefined when none is set. */
export function credentialsFromEnv(env: NodeJS.ProcessEnv = process.env): GitCredentials | undefined {
  const creds: GitCredentials = {
    token: env[GIT_AUTH_FLAGS.token.env] || undefined,
    username: env[GIT_AUTH_FLAGS.username.env] || undefined,
    password: env[GIT_AUTH_FLAGS.password.env] || undefined,
  };
  return hasCredentials(creds) ? creds : undefined;
}

export function hasCredentials(creds: GitCredentials | undefined): creds is GitCredentials {
  return Boolean(creds && (creds.token || creds.username || creds.password));
}

/** The username/password pair to send (see GitCredentials for how a token is sent). */
export function toBasicAuth(creds: GitCredentials): { username: string; password: string } {
  if (creds.token) return creds.username ? { username: creds.username, password: creds.token } : { username: creds.token, password: 'x-oauth-basic' };
  return { username: creds.username ?? '', password: creds.password ?? '' };
}

/**
 * The Authorization header sent with the first request. Sending it up front
 * (instead of waiting for a 401 like git does) saves one round trip on every poll.
 */
export function authorizationHeaders(creds: GitCredentials | undefined): Record<string, string> {
  if (!hasCredentials(creds)) return {};
  const { username, password } = toBasicAuth(creds);
  return { Authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` };
}

/**
 * isomorphic-git asks `onAuth` after a 401 and `onAuthFailure` after a second one.
 * The credentials went out with the first request already, so any 401 is final:
 * both callbacks cancel, which ends the request with a UserCanceledError instead of retrying.
 */
export const cancelOnAuthRequest: AuthCallback = (): GitAuth => ({ cancel: true });

/** Moves credentials embedded in a URL (`https://user:pass@host/x`) out of it, so logs and config never hold them. */
export function splitUrlCredentials(url: string): { url: string; credentials?: GitCredentials } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { url };
  }
  if (!parsed.username && !parsed.password) return { url };
  const credentials = { username: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) };
  parsed.username = '';
  parsed.password = '';
  return { url: parsed.toString(), credentials };
}
