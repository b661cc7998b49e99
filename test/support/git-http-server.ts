/** Tests use the demo's git host: the real `git http-backend` behind a small Node HTTP server. */
export {
  startGitHttpServer,
  type GitHttpServer,
  type GitHttpServerOptions,
  type GitHttpAuth,
  type GitHttpRequestRecord,
  type GitHttpDownMode,
} from '../../src/demo/git-http-server.js';
