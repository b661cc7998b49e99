import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** An HTTP server on 127.0.0.1 serving artifacts from memory, plus an endless one at /endless. */
export class ArtifactServer {
  readonly files = new Map<string, Buffer>();
  /** Paths answered with a 302 to the given location. */
  readonly redirects = new Map<string, string>();
  /** Every path requested, in order: a refused URL must never show up here. */
  readonly requested: string[] = [];
  /** Bytes written for /endless before the client hung up. */
  endlessBytesSent = 0;
  endlessClosed = false;

  private constructor(private readonly server: http.Server, readonly url: string) {}

  static async start(): Promise<ArtifactServer> {
    let instance: ArtifactServer | undefined;
    const server = http.createServer((request, response) => instance!.handle(request, response));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    instance = new ArtifactServer(server, `http://127.0.0.1:${port}`);
    return instance;
  }

  add(path: string, content: Buffer | string): { url: string; sha256: string; size: number } {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
    this.files.set(path, data);
    return { url: `${this.url}${path}`, sha256: sha256(data), size: data.length };
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    this.requested.push(request.url ?? '');
    const location = this.redirects.get(request.url ?? '');
    if (location !== undefined) {
      response.writeHead(302, { location }).end();
      return;
    }
    if (request.url === '/endless') {
      // No Content-Length: the client only learns the size by reading.
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => {
        while (!response.destroyed && this.endlessBytesSent < 1024 * 1024 * 1024) {
          this.endlessBytesSent += chunk.length;
          if (!response.write(chunk)) {
            response.once('drain', pump);
            return;
          }
        }
        response.end();
      };
      response.on('close', () => (this.endlessClosed = true));
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      pump();
      return;
    }
    const data = this.files.get(request.url ?? '');
    if (!data) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, { 'content-length': data.length }).end(data);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
