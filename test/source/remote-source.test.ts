import * as fs from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import git from 'isomorphic-git';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isCascadeError } from '../../src/core/errors.js';
import type { FleetSource } from '../../src/source/fleet-source.js';
import { openFleetSource } from '../../src/source/open-fleet-source.js';
import { LocalSource } from '../../src/source/local-source.js';
import { RemoteSource } from '../../src/source/remote-source.js';
import { withCapabilities } from '../../src/source/git-wire.js';
import {
  commitAndPush,
  forcePush,
  git as gitBin,
  makeFleetRemote,
  makeOrphanCommit,
  type FleetRemote,
} from '../support/git-fixtures.js';
import { startGitHttpServer, type GitHttpServer, type GitHttpServerOptions } from '../support/git-http-server.js';

function fleetFiles(count: number): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    files[`deployments/group-${i % 5}/app-${i}.yaml`] =
      `apiVersion: cascade/v1\nkind: Deployment\nmetadata:\n  name: app-${i}\nspec:\n  app: app-${i}\n  version: 1.0.${i}\n  selector:\n    matchLabels:\n      ring: r${i % 3}\n`;
  }
  return files;
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<Error> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `expected an error with code ${code}`).not.toBeNull();
  expect(isCascadeError(err) ? err.code : err).toBe(code);
  return err as Error;
}

describe('RemoteSource over a real git smart HTTP server', () => {
  let base: string;
  let remote: FleetRemote;
  let server: GitHttpServer;
  const sources: FleetSource[] = [];

  async function serve(options: Partial<GitHttpServerOptions> = {}): Promise<string> {
    server = await startGitHttpServer({ root: join(base, 'repos'), ...options });
    return `${server.url}/fleet.git`;
  }

  async function open(repo: string, extra: Partial<Parameters<typeof openFleetSource>[0]> = {}): Promise<FleetSource> {
    const source = await openFleetSource({ repo, branch: 'main', dataDir: join(base, 'data'), ...extra });
    sources.push(source);
    return source;
  }

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'cascade-remote-'));
    remote = await makeFleetRemote(join(base, 'repos'), 'fleet', fleetFiles(40));
  });

  afterEach(async () => {
    for (const source of sources.splice(0)) await source.close();
    await server?.stop();
    await rm(base, { recursive: true, force: true });
  });

  it('clones the branch into <dataDir>/repo.git without a work tree and returns its head', async () => {
    const source = await open(await serve());
    expect(source).toBeInstanceOf(RemoteSource);
    expect(await source.current()).toBeNull();

    expect(await source.sync()).toBe(remote.head);

    expect(source.location.gitdir).toBe(join(base, 'data', 'repo.git'));
    expect(source.location.dir).toBeUndefined();
    const commit = await git.readCommit({ fs, gitdir: source.location.gitdir, oid: remote.head });
    expect(commit.commit.message).toContain('initial fleet');
    expect(await source.current()).toBe(remote.head);
    // Only the bare repository: no checked-out YAML anywhere in the data dir.
    const dataEntries = await readdir(join(base, 'data'), { recursive: true });
    expect(dataEntries.filter((name) => String(name).endsWith('.yaml'))).toEqual([]);
    expect(dataEntries.some((name) => String(name).startsWith('repo.git.tmp-'))).toBe(false);
  });

  it('fetches a newly pushed commit, downloading only what changed', async () => {
    const source = await open(await serve());
    await source.sync();
    const cloneBytes = server.bytesSent();

    const next = await commitAndPush(remote.workdir, { 'deployments/group-1/app-1.yaml': 'kind: Deployment\nspec:\n  version: 2.0.0\n' }, 'roll out app-1 2.0.0');
    server.resetCounters();
    expect(await source.sync()).toBe(next);
    const fetchBytes = server.bytesSent();

    const { commit } = await git.readCommit({ fs, gitdir: source.location.gitdir, oid: next });
    expect(commit.parent).toEqual([remote.head]);
    // The server was told what we have: the download is a fraction of the clone.
    expect(fetchBytes).toBeLessThan(cloneBytes / 2);
  });

  it('costs under 1 KB on the wire for a poll with no new commit, also right after a fetch', async () => {
    const source = await open(await serve());
    await source.sync();
    server.resetCounters();
    expect(await source.sync()).toBe(remote.head);
    const firstPoll = server.bytesSent();

    const next = await commitAndPush(remote.workdir, { 'deployments/group-2/app-2.yaml': 'version: 3\n' }, 'change');
    await source.sync();
    server.resetCounters();
    expect(await source.sync()).toBe(next);
    const pollAfterFetch = server.bytesSent();

    console.info(`no-op poll: ${firstPoll} bytes sent by the server; after a fetch: ${pollAfterFetch} bytes`);
    expect(firstPoll).toBeLessThan(1024);
    expect(pollAfterFetch).toBeLessThan(1024);
    // No pack negotiation at all when nothing changed.
    expect(server.requests().some((r) => r.path.endsWith('/git-upload-pack') && r.bytesSent > 1024)).toBe(false);
  });

  it('stores every fetch as a self-contained pack that git itself can verify (thin packs fattened)', async () => {
    const source = await open(await serve());
    await source.sync();
    let head = remote.head;
    for (let round = 0; round < 3; round++) {
      head = await commitAndPush(
        remote.workdir,
        {
          [`deployments/group-${round}/app-${round}.yaml`]: `version: ${round}\n`,
          [`deployments/group-${round + 1}/app-${round + 6}.yaml`]: null,
          [`new/nested/dir-${round}/file.yaml`]: `round: ${round}\n`,
        },
        `round ${round}`,
      );
      expect(await source.sync()).toBe(head);
    }
    const gitdir = source.location.gitdir;
    const packs = (await readdir(join(gitdir, 'objects', 'pack'))).filter((n) => n.endsWith('.pack'));
    expect(packs.length).toBe(4);
    // verify-pack refuses a thin pack ("unresolved deltas"): each one must stand alone.
    for (const pack of packs) await gitBin(gitdir, ['verify-pack', join('objects', 'pack', pack)]);
    await gitBin(gitdir, ['fsck', '--no-dangling']);
    expect(await gitBin(gitdir, ['ls-tree', '-r', head])).toBe(await gitBin(remote.bare, ['ls-tree', '-r', head]));
    const { blob } = await git.readBlob({ fs, gitdir, oid: head, filepath: 'deployments/group-2/app-2.yaml' });
    expect(Buffer.from(blob).toString()).toBe('version: 2\n');
  });

  it('reports a force-push back to an older commit, and to an unrelated history', async () => {
    const source = await open(await serve());
    const second = await commitAndPush(remote.workdir, { 'deployments/group-0/app-0.yaml': 'v: 2\n' }, 'second');
    expect(await source.sync()).toBe(second);

    const older = await forcePush(remote.workdir, remote.head);
    expect(older).toBe(remote.head);
    expect(await source.sync()).toBe(remote.head);
    expect(await source.current()).toBe(remote.head);

    const orphan = await makeOrphanCommit(remote.workdir, { 'fleet.yaml': 'kind: Fleet\n' }, 'rewritten history');
    expect(await forcePush(remote.workdir, orphan)).toBe(orphan);
    expect(await source.sync()).toBe(orphan);
    const { commit } = await git.readCommit({ fs, gitdir: source.location.gitdir, oid: orphan });
    expect(commit.parent).toEqual([]);
  });

  it('fails with source-unreachable when the host is down, and still lets the last fetched commit be read after a restart', async () => {
    const url = await serve();
    const first = await open(url);
    expect(await first.sync()).toBe(remote.head);
    await first.close();

    server.setDown(true, 'refuse');
    const err = await expectCode(first.sync(), 'source-unreachable');
    expect(err.message).toContain(url);

    // A restart of the reconciler while the host is still down.
    const restarted = await open(url);
    await expectCode(restarted.sync(), 'source-unreachable');
    expect(await restarted.current()).toBe(remote.head);
    const { commit } = await git.readCommit({ fs, gitdir: restarted.location.gitdir, oid: remote.head });
    expect(commit.message).toContain('initial fleet');

    server.setDown(true, '503');
    const err503 = await expectCode(restarted.sync(), 'source-unreachable');
    expect(err503.message).toContain('503');

    await server.stop();
    await expectCode(restarted.sync(), 'source-unreachable');
  });

  it('comes back once the host is back, picking up what was pushed meanwhile', async () => {
    const url = await serve();
    const source = await open(url);
    await source.sync();
    server.setDown(true);
    const next = await commitAndPush(remote.workdir, { 'deployments/group-3/app-3.yaml': 'v: 9\n' }, 'while down');
    await expectCode(source.sync(), 'source-unreachable');
    server.setDown(false);
    expect(await source.sync()).toBe(next);
  });

  it('gives up with source-unreachable on a host that accepts connections but never answers', async () => {
    const held: Socket[] = [];
    const silent = createNetServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as AddressInfo;
      const source = await open(`http://127.0.0.1:${port}/fleet.git`, { timeoutMs: 300 });
      const err = await expectCode(source.sync(), 'source-unreachable');
      expect(err.message).toContain('timed out');
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('leaves no half clone behind when the first clone fails', async () => {
    const url = await serve();
    server.setDown(true);
    const source = await open(url);
    await expectCode(source.sync(), 'source-unreachable');
    expect(await readdir(join(base, 'data'))).not.toContain('repo.git');
    server.setDown(false);
    expect(await source.sync()).toBe(remote.head);
  });

  it('names the branch when it does not exist, and the URL when there is no repository', async () => {
    const url = await serve();
    const source = await open(url, { branch: 'release' });
    const err = await expectCode(source.sync(), 'source-branch-missing');
    expect(err.message).toContain('"release"');
    expect(err.message).toContain(url);

    const missing = await open(`${server.url}/nope.git`, { dataDir: join(base, 'data-nope') });
    const notFound = await expectCode(missing.sync(), 'source-unreachable');
    expect(notFound.message).toContain('/nope.git');
  });

  it('follows another branch of the same data dir after a --branch change', async () => {
    const url = await serve();
    const main = await open(url);
    await main.sync();
    await gitBin(remote.workdir, ['checkout', '--quiet', '-b', 'release']);
    const release = await commitAndPush(remote.workdir, { 'fleet.yaml': 'kind: Fleet\n' }, 'release branch');
    const other = await open(url, { branch: 'release' });
    expect(await other.sync()).toBe(release);
    expect(await main.sync()).toBe(remote.head);
  });

  it('serializes concurrent syncs into the same gitdir', async () => {
    const source = await open(await serve());
    const results = await Promise.all([source.sync(), source.sync(), source.sync()]);
    expect(results).toEqual([remote.head, remote.head, remote.head]);
  });

  describe('with a host that requires basic auth', () => {
    beforeEach(async () => {
      await serve({ auth: { username: 'ops', password: 's3cret' } });
    });

    it('syncs with the right credentials', async () => {
      const source = await open(`${server.url}/fleet.git`, { auth: { username: 'ops', password: 's3cret' } });
      expect(await source.sync()).toBe(remote.head);
      // Credentials go with the first request: no 401 round trip on every poll.
      server.resetCounters();
      await source.sync();
      expect(server.requests().map((r) => r.status)).not.toContain(401);
    });

    it('accepts credentials embedded in the URL without storing them', async () => {
      const source = await open(`http://ops:s3cret@${server.url.slice('http://'.length)}/fleet.git`);
      expect(await source.sync()).toBe(remote.head);
      const config = await fs.promises.readFile(join(source.location.gitdir, 'config'), 'utf8');
      expect(config).not.toContain('s3cret');
    });

    it('fails fast with source-auth-failed on wrong credentials, saying which flag to set', async () => {
      const source = await open(`${server.url}/fleet.git`, { auth: { username: 'ops', password: 'wrong' } });
      const err = await expectCode(source.sync(), 'source-auth-failed');
      expect(err.message).toContain('--git-token');
      expect(err.message).toContain('CASCADE_GIT_TOKEN');
      expect(server.requests().length).toBeLessThanOrEqual(2);
    });

    it('fails with source-auth-failed when no credentials are given', async () => {
      const source = await open(`${server.url}/fleet.git`);
      const err = await expectCode(source.sync(), 'source-auth-failed');
      expect(err.message).toContain('requires credentials');
      expect(server.requests().length).toBeLessThanOrEqual(2);
    });
  });

  it('syncs with a token, sent as token:x-oauth-basic', async () => {
    const url = await serve({ auth: { token: 'ghp_exampletoken' } });
    const source = await open(url, { auth: { token: 'ghp_exampletoken' } });
    expect(await source.sync()).toBe(remote.head);
    const wrong = await open(url, { auth: { token: 'nope' }, dataDir: join(base, 'data-wrong') });
    await expectCode(wrong.sync(), 'source-auth-failed');
  });
});

describe('openFleetSource', () => {
  it('reads a path as a local repository and rejects ssh URLs with a hint', async () => {
    const base = await mkdtemp(join(tmpdir(), 'cascade-open-'));
    try {
      const remote = await makeFleetRemote(join(base, 'repos'), 'fleet', { 'a.yaml': 'a: 1\n' });
      const local = await openFleetSource({ repo: remote.bare, branch: 'main', dataDir: join(base, 'data') });
      expect(local).toBeInstanceOf(LocalSource);
      expect(await local.sync()).toBe(remote.head);
      await local.close();

      const fromFileUrl = await openFleetSource({ repo: `file://${remote.workdir}`, branch: 'main', dataDir: join(base, 'data') });
      expect(await fromFileUrl.sync()).toBe(remote.head);
      await fromFileUrl.close();

      const err = await expectCode(
        openFleetSource({ repo: 'git@example.com:org/fleet.git', branch: 'main', dataDir: join(base, 'data') }),
        'source-unsupported-url',
      );
      expect(err.message).toContain('https');
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe('withCapabilities', () => {
  const pkt = (line: string) => (line.length + 4).toString(16).padStart(4, '0') + line;
  const want = `want ${'a'.repeat(40)}`;

  it('adds the missing capabilities to the first want line and keeps the rest of the request', () => {
    const request = Buffer.from(pkt(`${want} ofs-delta\n`) + pkt(`want ${'b'.repeat(40)}\n`) + '0000' + pkt('done\n'));
    const out = withCapabilities(request, ['thin-pack', 'no-progress', 'ofs-delta']).toString();
    expect(out).toBe(pkt(`${want} ofs-delta thin-pack no-progress\n`) + pkt(`want ${'b'.repeat(40)}\n`) + '0000' + pkt('done\n'));
  });

  it('leaves other requests alone', () => {
    const lsRefs = Buffer.from(pkt('command=ls-refs\n') + '0001' + pkt('ref-prefix refs/heads/main\n') + '0000');
    expect(withCapabilities(lsRefs, ['thin-pack']).equals(lsRefs)).toBe(true);
    expect(withCapabilities(Buffer.from('zz'), ['thin-pack']).toString()).toBe('zz');
  });
});
