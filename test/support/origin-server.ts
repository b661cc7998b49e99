import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * An artifact origin on 127.0.0.1 that counts what it sends per path, can ask for a bearer token,
 * and can cut a response after a number of bytes (the connection is destroyed mid-body).
 */
export class OriginServer {
  readonly files = new Map<string, Buffer>();
  /** Body bytes written per path. */
  readonly bytesSent = new Map<string, number>();
  readonly requests: Array<{ path: string; authorization: string | undefined }> = [];
  /** Path -> cut the next response for it after this many bytes. */
  readonly cutOnce = new Map<string, number>();
  requiredToken: string | null = null;

  private constructor(private readonly server: http.Server, readonly url: string) {}

  static async start(): Promise<OriginServer> {
    let instance: OriginServer | undefined;
    const server = http.createServer((request, response) => instance!.handle(request, response));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    instance = new OriginServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return instance;
  }

  add(path: string, data: Buffer): { url: string; sha256: string; size: number } {
    this.files.set(path, data);
    return { url: `${this.url}${path}`, sha256: sha256(data), size: data.length };
  }

  sent(path: string): number {
    return this.bytesSent.get(path) ?? 0;
  }

  get totalSent(): number {
    let total = 0;
    for (const n of this.bytesSent.values()) total += n;
    return total;
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const path = request.url ?? '';
    this.requests.push({ path, authorization: request.headers.authorization });
    if (this.requiredToken !== null && request.headers.authorization !== `Bearer ${this.requiredToken}`) {
      response.writeHead(401).end('token needed');
      return;
    }
    const data = this.files.get(path);
    if (!data) {
      response.writeHead(404).end('not found');
      return;
    }
    const cut = this.cutOnce.get(path);
    this.cutOnce.delete(path);
    const limit = cut ?? data.length;
    response.writeHead(200, { 'content-length': data.length, 'content-type': 'application/octet-stream' });
    let offset = 0;
    const pump = () => {
      while (offset < limit) {
        const chunk = data.subarray(offset, Math.min(limit, offset + 64 * 1024));
        offset += chunk.length;
        this.bytesSent.set(path, this.sent(path) + chunk.length);
        if (!response.write(chunk)) return void response.once('drain', pump);
      }
      if (cut !== undefined) response.destroy();
      else response.end();
    };
    pump();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * A TCP proxy in front of a server that records each request's head and can cut one response after a
 * number of bytes, as a flaky site link does. One request per connection (no keep-alive reuse needed).
 */
export class CuttingProxy {
  /** The request heads seen, lower-cased header names. */
  readonly heads: Array<{ line: string; headers: Record<string, string> }> = [];
  /** Bytes from the server to clients, all connections. */
  bytesDown = 0;
  /** Cut the next response whose request line contains `match` after `bytes` bytes. */
  cut: { match: string; bytes: number } | null = null;

  private constructor(private readonly server: net.Server, readonly url: string) {}

  static async start(target: string): Promise<CuttingProxy> {
    const { hostname, port } = new URL(target);
    let instance: CuttingProxy | undefined;
    const server = net.createServer((client) => instance!.handle(client, hostname, Number(port)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    instance = new CuttingProxy(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return instance;
  }

  private readonly sockets = new Set<net.Socket>();

  private handle(client: net.Socket, host: string, port: number): void {
    const upstream = net.connect(port, host);
    this.sockets.add(client).add(upstream);
    let head = '';
    let cutAfter: number | null = null;
    let down = 0;
    client.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      let end: number;
      while ((end = head.indexOf('\r\n\r\n')) >= 0) {
        const [line, ...rest] = head.slice(0, end).split('\r\n');
        const headers: Record<string, string> = {};
        for (const h of rest) {
          const colon = h.indexOf(':');
          headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
        }
        this.heads.push({ line: line!, headers });
        if (this.cut && line!.includes(this.cut.match)) {
          cutAfter = this.cut.bytes;
          down = 0;
          this.cut = null;
        }
        head = head.slice(end + 4);
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutAfter !== null && down + chunk.length >= cutAfter) {
        const part = chunk.subarray(0, Math.max(0, cutAfter - down));
        this.bytesDown += part.length;
        client.write(part, () => {
          client.destroy();
          upstream.destroy();
        });
        cutAfter = null;
        return;
      }
      down += chunk.length;
      this.bytesDown += chunk.length;
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  }

  rangeRequests(match: string): string[] {
    return this.heads.filter((h) => h.line.includes(match) && h.headers['range']).map((h) => h.headers['range']!);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
