import { createRequire } from 'node:module';

/**
 * node:https, required on the first https: request. An agent that talks plain http: to its region
 * (a site network, a test) never loads TLS; `import https` at the top of a module would, at start.
 */
let https: typeof import('node:https') | undefined;

export function lazyHttps(): typeof import('node:https') {
  https ??= createRequire(import.meta.url)('node:https') as typeof import('node:https');
  return https;
}
