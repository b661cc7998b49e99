import { spawn } from 'node:child_process';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A small git smart HTTP host: it runs the real `git http-backend` CGI for bare
 * repositories under `root`, so clients (isomorphic-git, the git binary) talk to
 * the same server code as on a real git host. The demo plays a git host with it
 * and tests measure bytes on the wire with it. Fetch and push both work: push is
 * enabled for every repository through GIT_CONFIG_* (unless `allowPush: false`).
 */
export type GitHttpAuth = { username: string; password: string } | { token: string };

export interface GitHttpServerOptions {
  /** Directory holding the bare repositories, served as `/<name>.git`. */
  root: string;
  /** Port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /**
   * Require HTTP basic auth. With `{ token }`, a request passes when it sends
   * `Authorization: Bearer <token>`, or basic auth whose username or password is the token.
   */
  auth?: GitHttpAuth;
  /** Let clients push (`git-receive-pack`); true by default. */
  allowPush?: boolean;
}

export interface GitHttpRequestRecord {
  method: string;
  path: string;
  status: number;
  /** Bytes of this response on the wire: status line, headers and body. */
  bytesSent: number;
  /** Bytes of this request on the wire: request line, headers and body. */
  bytesReceived: number;
}

export type GitHttpDownMode = 'refuse' | '503';

export interface GitHttpServer {
  /** `http://127.0.0.1:PORT`, without a trailing slash; a repo is `${url}/<name>.git`. */
  readonly url: string;
  /** Bytes written to clients on the wire (headers and bodies) since start or the last reset. */
  bytesSent(): number;
  /** Bytes read from clients on the wire since start or the last reset. */
  bytesReceived(): number;
  resetCounters(): void;
  /** The requests answered since start or the last reset (the last 1,000 at most). */
  requests(): GitHttpRequestRecord[];
  /**
   * Simulates the git host being unreachable: 'refuse' resets every connection
   * (the client sees ECONNRESET), '503' answers every request with 503.
   * `setDown(false)` brings it back on the same port.
   */
  setDown(down: boolean, mode?: GitHttpDownMode): void;
  /**
   * Simulates a host that stalls without going quiet: responses begun from now on send their headers
   * at once, then their body one byte every `msPerByte`. `setTrickle(null)` serves at full speed again.
   */
  setTrickle(msPerByte: number | null): void;
  stop(): Promise<void>;
}

const MAX_RECORDS = 1000;

export async function startGitHttpServer(options: GitHttpServerOptions): Promise<GitHttpServer> {
  const { root, auth, allowPush = true } = options;
  const live = new Set<Socket>();
  let closedSent = 0;
  let closedReceived = 0;
  let baseSent = 0;
  let baseReceived = 0;
  let records: GitHttpRequestRecord[] = [];
  let down: GitHttpDownMode | null = null;
  let trickleMs: number | null = null;

  const totalSent = () => closedSent + [...live].reduce((sum, s) => sum + s.bytesWritten, 0);
  const totalReceived = () => closedReceived + [...live].reduce((sum, s) => sum + s.bytesRead, 0);

  // Where the previous request on a keep-alive socket ended, to attribute bytes to requests.
  const marks = new WeakMap<Socket, { sent: number; received: number }>();

  const server = createServer((req, res) => {
    const socket = req.socket;
    let recorded = false;
    const record = () => {
      if (recorded) return;
      recorded = true;
      const mark = marks.get(socket) ?? { sent: 0, received: 0 };
      const now = { sent: socket.bytesWritten, received: socket.bytesRead };
      marks.set(socket, now);
      records.push({
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        status: res.statusCode,
        bytesSent: now.sent - mark.sent,
        bytesReceived: now.received - mark.received,
      });
      if (records.length > MAX_RECORDS) records = records.slice(-MAX_RECORDS);
    };
    res.on('finish', record);
    res.on('close', record);

    if (down === '503') return sendText(res, 503, 'git host is down (simulated)\n');
    if (auth && !isAuthorized(req, auth)) {
      return sendText(res, 401, 'authentication required\n', { 'WWW-Authenticate': 'Basic realm="cascade git"' });
    }
    runHttpBackend(req, trickleMs === null ? res : trickling(res, trickleMs), root, allowPush);
  });

  server.on('connection', (socket: Socket) => {
    if (down === 'refuse') {
      socket.destroy();
      return;
    }
    live.add(socket);
    socket.on('close', () => {
      live.delete(socket);
      closedSent += socket.bytesWritten;
      closedReceived += socket.bytesRead;
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    bytesSent: () => totalSent() - baseSent,
    bytesReceived: () => totalReceived() - baseReceived,
    resetCounters() {
      baseSent = totalSent();
      baseReceived = totalReceived();
      records = [];
    },
    requests: () => records.map((r) => ({ ...r })),
    setTrickle(msPerByte) {
      trickleMs = msPerByte;
    },
    setDown(isDown, mode = 'refuse') {
      down = isDown ? mode : null;
      if (down === 'refuse') for (const socket of live) socket.destroy();
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The response, with its body slowed to one byte every `msPerByte` (its own `write` and `end` replaced). */
function trickling(res: ServerResponse, msPerByte: number): ServerResponse {
  const queue: number[] = [];
  let ending = false;
  const write = res.write.bind(res) as (chunk: Buffer) => boolean;
  const end = res.end.bind(res) as () => ServerResponse;
  const timer = setInterval(() => {
    if (res.destroyed) return clearInterval(timer);
    const byte = queue.shift();
    if (byte !== undefined) write(Buffer.from([byte]));
    else if (ending) {
      clearInterval(timer);
      end();
    }
  }, msPerByte);
  res.on('close', () => clearInterval(timer));
  const slowed = res as unknown as { write: (chunk: Buffer | string) => boolean; end: (chunk?: Buffer | string) => ServerResponse };
  slowed.write = (chunk) => {
    // Headers go at once; only the body trickles.
    if (!res.headersSent) res.flushHeaders();
    for (const byte of Buffer.from(chunk)) queue.push(byte);
    return true;
  };
  slowed.end = (chunk) => {
    if (chunk) slowed.write(chunk);
    else if (!res.headersSent) res.flushHeaders();
    ending = true;
    return res;
  };
  return res;
}

function runHttpBackend(req: IncomingMessage, res: ServerResponse, root: string, allowPush: boolean): void {
  const url = new URL(req.url ?? '/', 'http://localhost');
  let pathInfo: string;
  try {
    pathInfo = decodeURIComponent(url.pathname);
  } catch {
    return sendText(res, 400, 'malformed path\n');
  }
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    GIT_HTTP_MAX_REQUEST_BUFFER: '100M',
    PATH_INFO: pathInfo,
    QUERY_STRING: url.search.slice(1),
    REQUEST_METHOD: req.method ?? 'GET',
    REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    REMOTE_USER: remoteUser(req) ?? 'anonymous',
    SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
    // http-backend refuses receive-pack unless the repo says http.receivepack=true.
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'http.receivepack',
    GIT_CONFIG_VALUE_0: allowPush ? 'true' : 'false',
  };
  if (req.headers['content-type']) env.CONTENT_TYPE = req.headers['content-type'];
  // Without a length (chunked uploads) http-backend reads the body to EOF.
  if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
  // Real CGI hands every request header over as HTTP_*: http-backend inflates a
  // gzip'd body from HTTP_CONTENT_ENCODING and reads protocol v2 from HTTP_GIT_PROTOCOL.
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || name === 'authorization') continue;
    env[`HTTP_${name.toUpperCase().replace(/-/g, '_')}`] = Array.isArray(value) ? value.join(', ') : value;
  }
  const protocol = req.headers['git-protocol'];
  if (typeof protocol === 'string') env.GIT_PROTOCOL = protocol;

  const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    if (stderr.length < 4096) stderr += chunk.toString();
  });
  child.on('error', (err) => {
    if (!res.headersSent) sendText(res, 500, `cannot run git http-backend: ${err.message}\n`);
    else res.destroy(err);
  });
  child.stdin.on('error', () => {
    // http-backend may exit before reading the whole body (e.g. a bad request); its answer still counts.
  });
  req.pipe(child.stdin);
  res.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });

  let head = Buffer.alloc(0);
  let headersDone = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (headersDone) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const parsed = parseCgiHead(head);
    if (!parsed) return;
    headersDone = true;
    res.writeHead(parsed.status, parsed.statusMessage, parsed.headers);
    if (parsed.body.length) res.write(parsed.body);
  });
  child.stdout.on('end', () => {
    if (!headersDone) {
      const detail = stderr.trim() || 'no response';
      return sendText(res, 500, `git http-backend failed: ${detail}\n`);
    }
    res.end();
  });
}

interface CgiHead {
  status: number;
  statusMessage: string;
  headers: Record<string, string>;
  body: Buffer;
}

/** Splits the CGI header block from the body; null until the blank line has arrived. */
export function parseCgiHead(buffer: Buffer): CgiHead | null {
  const crlf = buffer.indexOf('\r\n\r\n');
  const lf = buffer.indexOf('\n\n');
  let end: number;
  let sepLength: number;
  if (crlf !== -1 && (lf === -1 || crlf < lf)) {
    end = crlf;
    sepLength = 4;
  } else if (lf !== -1) {
    end = lf;
    sepLength = 2;
  } else {
    return null;
  }
  let status = 200;
  let statusMessage = 'OK';
  const headers: Record<string, string> = {};
  for (const line of buffer.subarray(0, end).toString('latin1').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') {
      const match = /^(\d{3})\s*(.*)$/.exec(value);
      if (match) {
        status = Number(match[1]);
        statusMessage = match[2] || statusMessage;
      }
    } else {
      headers[name] = value;
    }
  }
  return { status, statusMessage, headers, body: buffer.subarray(end + sepLength) };
}

function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function credentials(req: IncomingMessage): { scheme: string; username?: string; password?: string; token?: string } | null {
  const header = req.headers.authorization;
  if (!header) return null;
  const space = header.indexOf(' ');
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1).trim();
  if (scheme === 'bearer') return { scheme, token: value };
  if (scheme !== 'basic') return null;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return { scheme, username: decoded, password: '' };
  return { scheme, username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function remoteUser(req: IncomingMessage): string | undefined {
  const given = credentials(req);
  return given?.username || undefined;
}

function isAuthorized(req: IncomingMessage, auth: GitHttpAuth): boolean {
  const given = credentials(req);
  if (!given) return false;
  if ('token' in auth) {
    if (given.token !== undefined) return sameSecret(given.token, auth.token);
    return sameSecret(given.username ?? '', auth.token) || sameSecret(given.password ?? '', auth.token);
  }
  return sameSecret(given.username ?? '', auth.username) && sameSecret(given.password ?? '', auth.password);
}

function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}
