import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseCgiHead } from '../../src/demo/git-http-server.js';
import { commitAndPush, commitFiles, git, makeFleetRemote, type FleetRemote } from './git-fixtures.js';
import { startGitHttpServer, type GitHttpServer } from './git-http-server.js';

function pktLine(line: string): string {
  return (line.length + 4).toString(16).padStart(4, '0') + line;
}

async function gitFails(cwd: string, args: string[]): Promise<string> {
  try {
    await git(cwd, args);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`git ${args.join(' ')} succeeded but should have failed`);
}

describe('git smart HTTP test server (real git http-backend)', () => {
  let base: string;
  let remote: FleetRemote;
  let server: GitHttpServer | undefined;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'cascade-githttp-'));
    remote = await makeFleetRemote(join(base, 'repos'), 'fleet', { 'apps/a.yaml': 'kind: App\n', 'fleet.yaml': 'kind: Fleet\n' });
  });

  afterEach(async () => {
    await server?.stop();
    server = undefined;
    await rm(base, { recursive: true, force: true });
  });

  it('serves clone and push to the git binary and counts the bytes of every request', async () => {
    server = await startGitHttpServer({ root: join(base, 'repos') });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const url = `${server.url}/fleet.git`;

    await git(base, ['clone', '--quiet', url, join(base, 'clone')]);
    expect(await git(join(base, 'clone'), ['rev-parse', 'HEAD'])).toBe(remote.head);
    const sent = server.bytesSent();
    const requests = server.requests();
    expect(requests.length).toBeGreaterThanOrEqual(2);
    expect(requests.every((r) => r.status === 200)).toBe(true);
    expect(requests.map((r) => r.path)).toContain('/fleet.git/git-upload-pack');
    expect(requests.reduce((sum, r) => sum + r.bytesSent, 0)).toBe(sent);
    expect(requests.reduce((sum, r) => sum + r.bytesReceived, 0)).toBe(server.bytesReceived());
    expect(server.bytesReceived()).toBeGreaterThan(0);

    // Push over HTTP (receive-pack), then the bare repository has the commit.
    const pushed = await commitFiles(join(base, 'clone'), { 'apps/b.yaml': 'kind: App\n' }, 'add b');
    await git(join(base, 'clone'), ['push', '--quiet', 'origin', 'HEAD:main']);
    expect(await git(remote.bare, ['rev-parse', 'main'])).toBe(pushed);
    expect(server.requests().some((r) => r.path === '/fleet.git/git-receive-pack' && r.status === 200)).toBe(true);

    server.resetCounters();
    expect(server.bytesSent()).toBe(0);
    expect(server.bytesReceived()).toBe(0);
    expect(server.requests()).toEqual([]);
  });

  it('takes a chunked push larger than git\'s post buffer', async () => {
    server = await startGitHttpServer({ root: join(base, 'repos') });
    await git(base, ['clone', '--quiet', `${server.url}/fleet.git`, join(base, 'clone')]);
    const big = randomBytes(3 * 1024 * 1024).toString('base64');
    const pushed = await commitFiles(join(base, 'clone'), { 'blob.txt': big }, 'big');
    await git(join(base, 'clone'), ['-c', 'http.postBuffer=65536', 'push', '--quiet', 'origin', 'HEAD:main']);
    expect(await git(remote.bare, ['rev-parse', 'main'])).toBe(pushed);
  });

  it('inflates a gzip-encoded upload-pack request', async () => {
    server = await startGitHttpServer({ root: join(base, 'repos') });
    const body = pktLine(`want ${remote.head} ofs-delta\n`) + '0000' + pktLine('done\n');
    const res = await fetch(`${server.url}/fleet.git/git-upload-pack`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-git-upload-pack-request', 'Content-Encoding': 'gzip' },
      body: gzipSync(Buffer.from(body)),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-git-upload-pack-result');
    const answer = Buffer.from(await res.arrayBuffer());
    expect(answer.includes(Buffer.from('PACK'))).toBe(true);
  });

  it('requires basic auth when configured', async () => {
    server = await startGitHttpServer({ root: join(base, 'repos'), auth: { username: 'ops', password: 'pw' } });
    const host = server.url.slice('http://'.length);
    const refused = await gitFails(base, ['clone', '--quiet', `${server.url}/fleet.git`, join(base, 'anon')]);
    expect(refused).toMatch(/Authentication failed|could not read Username|401/i);
    expect(server.requests()[0]?.status).toBe(401);
    await gitFails(base, ['clone', '--quiet', `http://ops:bad@${host}/fleet.git`, join(base, 'bad')]);
    await git(base, ['clone', '--quiet', `http://ops:pw@${host}/fleet.git`, join(base, 'ok')]);
    expect(await git(join(base, 'ok'), ['rev-parse', 'HEAD'])).toBe(remote.head);
  });

  it('accepts a token as bearer or as either half of basic auth', async () => {
    server = await startGitHttpServer({ root: join(base, 'repos'), auth: { token: 'tok123' } });
    const refs = `${server.url}/fleet.git/info/refs?service=git-upload-pack`;
    const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    expect((await fetch(refs)).status).toBe(401);
    expect((await fetch(refs, { headers: { Authorization: 'Bearer tok123' } })).status).toBe(200);
    expect((await fetch(refs, { headers: { Authorization: basic('tok123', 'x-oauth-basic') } })).status).toBe(200);
    expect((await fetch(refs, { headers: { Authorization: basic('oauth2', 'tok123') } })).status).toBe(200);
    expect((await fetch(refs, { headers: { Authorization: 'Bearer nope' } })).status).toBe(401);
  });

  it('simulates the host going down (refused connections, then 503) and coming back', async () => {
    server = await startGitHttpServer({ root: join(base, 'repos') });
    const url = `${server.url}/fleet.git`;
    await git(base, ['clone', '--quiet', url, join(base, 'clone')]);
    const next = await commitAndPush(remote.workdir, { 'fleet.yaml': 'kind: Fleet\nspec: {}\n' }, 'next');

    server.setDown(true);
    await gitFails(join(base, 'clone'), ['fetch', '--quiet']);
    server.setDown(true, '503');
    expect(await gitFails(join(base, 'clone'), ['fetch', '--quiet'])).toContain('503');
    server.setDown(false);
    await git(join(base, 'clone'), ['fetch', '--quiet']);
    expect(await git(join(base, 'clone'), ['rev-parse', 'origin/main'])).toBe(next);
  });

  it('answers 404 for a repository that is not there', async () => {
    server = await startGitHttpServer({ root: join(base, 'repos') });
    const res = await fetch(`${server.url}/missing.git/info/refs?service=git-upload-pack`);
    expect(res.status).toBe(404);
    expect(await readFile(join(remote.bare, 'HEAD'), 'utf8')).toContain('refs/heads/main');
  });
});

describe('parseCgiHead', () => {
  it('waits for the blank line, then splits status, headers and body (CRLF or LF)', () => {
    expect(parseCgiHead(Buffer.from('Status: 404 Not Found\r\nContent-Type: text/plain\r\n'))).toBeNull();
    const crlf = parseCgiHead(Buffer.from('Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nbody'))!;
    expect(crlf.status).toBe(404);
    expect(crlf.statusMessage).toBe('Not Found');
    expect(crlf.headers).toEqual({ 'Content-Type': 'text/plain' });
    expect(crlf.body.toString()).toBe('body');
    const lf = parseCgiHead(Buffer.from('Content-Type: application/x-git-upload-pack-advertisement\n\n001e# service'))!;
    expect(lf.status).toBe(200);
    expect(lf.headers['Content-Type']).toBe('application/x-git-upload-pack-advertisement');
    expect(lf.body.toString()).toBe('001e# service');
  });
});
