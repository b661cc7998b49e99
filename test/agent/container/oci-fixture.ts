import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, symlink, writeFile, copyFile, chmod } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../support/free-port.js';

/**
 * Real parts for container tests: Debian's docker-registry on a free port, tiny images made from
 * busybox-static and pushed by digest, podman with runc configured through CONTAINERS_CONF and
 * CONTAINERS_REGISTRIES_CONF files (nothing in /etc is touched). See /work/shared/notes/containers.md.
 */

const execFileAsync = promisify(execFile);
export const BUSYBOX = '/bin/busybox';

/**
 * Skips a test file that cannot run here, with one line saying what it needs; under
 * CASCADE_STRICT_SKIPS=1 (.ci/run) the missing part is a failure instead. Returns whether to skip.
 * (Kept small and local so a shared helper in test/support can replace it.)
 */
export function skipUnless(problem: string | null, file: string): boolean {
  if (problem === null) return false;
  if (process.env['CASCADE_STRICT_SKIPS'] === '1') throw new Error(`${file} cannot run: ${problem} (CASCADE_STRICT_SKIPS=1 makes this a failure)`);
  console.warn(`${file} skipped: ${problem}`);
  return true;
}

export async function podman(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await execFileAsync('podman', args, { env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`podman ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

/** The settings files podman needs here, and the environment pointing at them. */
export async function podmanEnvironment(dir: string, insecureRegistries: string[]): Promise<NodeJS.ProcessEnv> {
  await mkdir(dir, { recursive: true });
  const conf = join(dir, 'containers.conf');
  const registries = join(dir, 'registries.conf');
  // crun fails on hybrid cgroups here; runc cannot raise ulimits, so they are lowered.
  await writeFile(conf, '[engine]\nruntime = "runc"\n\n[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n');
  await writeFile(registries, insecureRegistries.map((location) => `[[registry]]\nlocation = "${location}"\ninsecure = true\n`).join('\n'));
  return { ...process.env, CONTAINERS_CONF: conf, CONTAINERS_REGISTRIES_CONF: registries };
}

/** Why the container tests cannot run here, or null. */
export async function containerTestProblem(dir: string): Promise<string | null> {
  const which = async (tool: string) => {
    try {
      await execFileAsync(tool, ['--version'], { timeout: 15_000 });
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code !== 'ENOENT';
    }
  };
  const missing: string[] = [];
  if (!(await which('podman'))) missing.push('podman');
  if (!(await which('runc'))) missing.push('runc');
  if (!(await which('docker-registry'))) missing.push('docker-registry');
  try {
    await execFileAsync(BUSYBOX, ['true']);
  } catch {
    missing.push('busybox-static');
  }
  if (missing.length) return `needs ${missing.join(', ')} (Debian: apt-get install -y podman runc busybox-static docker-registry)`;
  if (process.getuid && process.getuid() !== 0) return `needs root to run podman with runc here (uid ${process.getuid()})`;
  try {
    const env = await podmanEnvironment(join(dir, 'probe'), []);
    await podman(['info'], env, 60_000);
  } catch (err) {
    return `podman does not work here: ${(err as Error).message.split('\n')[0]}`;
  }
  return null;
}

export interface Registry {
  /** host:port */
  host: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** Debian's docker-registry (the CNCF distribution registry) on a free port, storing in `dir`; with `proxyOf`, a pull-through cache of that registry. */
export async function startRegistry(dir: string, proxyOf?: string): Promise<Registry> {
  await mkdir(join(dir, 'storage'), { recursive: true });
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config = join(dir, 'config.yml');
  await writeFile(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\n  delete:\n    enabled: true\nhttp:\n  addr: ${host}\n${proxyOf ? `proxy:\n  remoteurl: http://${proxyOf}\n` : ''}`);
  let child: ChildProcess | null = null;
  const start = async () => {
    child = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const response = await fetch(`http://${host}/v2/`);
        if (response.ok) return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`docker-registry did not answer on ${host}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const stop = async () => {
    const running = child;
    child = null;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };
  await start();
  return { host, start, stop };
}

/**
 * Makes an image from busybox-static and `files` (path -> content), pushes it and returns its digest.
 * No CMD: the App's run spec says what runs.
 */
export async function pushImage(env: NodeJS.ProcessEnv, dir: string, ref: string, files: Record<string, string>, changes: string[] = [], healthcheck?: string[]): Promise<string> {
  const root = join(dir, 'rootfs');
  await rm(root, { recursive: true, force: true });
  await mkdir(join(root, 'bin'), { recursive: true });
  await copyFile(BUSYBOX, join(root, 'bin/busybox'));
  await chmod(join(root, 'bin/busybox'), 0o755);
  await symlink('busybox', join(root, 'bin/sh'));
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), content);
  }
  const tarball = join(dir, 'rootfs.tar');
  await execFileAsync('tar', ['-C', root, '-cf', tarball, '.']);
  if (healthcheck) {
    // import cannot set a HEALTHCHECK: build one layer on top (Docker format keeps it).
    const base = `${ref}-base`;
    await podman(['import', ...changes.flatMap((c) => ['--change', c]), tarball, base], env);
    await writeFile(join(dir, 'Containerfile'), `FROM ${base}\nHEALTHCHECK --interval=1h CMD ${JSON.stringify(healthcheck)}\n`);
    await podman(['build', '--format', 'docker', '--tag', ref, '--file', join(dir, 'Containerfile'), dir], env);
    await podman(['rmi', '--force', base], env);
  } else {
    await podman(['import', ...changes.flatMap((c) => ['--change', c]), tarball, ref], env);
  }
  const digestFile = join(dir, 'digest');
  await podman(['push', '--digestfile', digestFile, ref], env);
  const digest = (await readFile(digestFile, 'utf8')).trim();
  // Only the registry holds it now: the agent must pull it by digest.
  await podman(['rmi', '--force', ref], env);
  return digest;
}

/**
 * A registry that lies: in front of `upstream`, it answers a request for the manifest `asked` with the
 * manifest of `served` (claiming, in Docker-Content-Digest, that it is `asked`). Everything else passes.
 */
export async function startLyingRegistry(upstream: string, asked: string, served: string): Promise<{ host: string; close(): Promise<void> }> {
  const server = http.createServer((request, response) => {
    let path = request.url ?? '/';
    const lie = new RegExp(`^/v2/(.+)/manifests/${asked}$`).test(path);
    if (lie) path = path.replace(asked, served);
    const upstreamRequest = http.request(
      { host: upstream.split(':')[0], port: Number(upstream.split(':')[1]), path, method: request.method, headers: { ...request.headers, host: upstream } },
      (upstreamResponse) => {
        const headers = { ...upstreamResponse.headers };
        if (lie) headers['docker-content-digest'] = asked;
        response.writeHead(upstreamResponse.statusCode ?? 502, headers);
        upstreamResponse.pipe(response);
      },
    );
    upstreamRequest.on('error', () => response.destroy());
    request.pipe(upstreamRequest);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    host: `127.0.0.1:${address.port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/**
 * A private registry: in front of `upstream`, every request needs HTTP basic auth with `user`/`password`
 * (401 with a Basic challenge otherwise). Counts the requests it let through and refused.
 */
export async function startPrivateRegistry(upstream: string, user: string, password: string): Promise<{ host: string; allowed: () => number; refused: () => number; close(): Promise<void> }> {
  const expected = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  let allowed = 0;
  let refused = 0;
  const server = http.createServer((request, response) => {
    if (request.headers.authorization !== expected) {
      refused++;
      response.writeHead(401, { 'www-authenticate': 'Basic realm="cascade-test"', 'content-type': 'application/json' });
      response.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    allowed++;
    const { authorization: _drop, ...headers } = request.headers;
    const upstreamRequest = http.request(
      { host: upstream.split(':')[0], port: Number(upstream.split(':')[1]), path: request.url, method: request.method, headers: { ...headers, host: upstream } },
      (upstreamResponse) => {
        response.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers);
        upstreamResponse.pipe(response);
      },
    );
    upstreamRequest.on('error', () => response.destroy());
    request.pipe(upstreamRequest);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    host: `127.0.0.1:${address.port}`,
    allowed: () => allowed,
    refused: () => refused,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** Removes every container carrying `label` (key=value) and the images of `repositoryPrefix`; never throws. */
export async function cleanupContainers(env: NodeJS.ProcessEnv, label: string, repositoryPrefix: string): Promise<void> {
  try {
    const ids = (await podman(['ps', '-aq', '--filter', `label=${label}`], env)).split('\n').filter(Boolean);
    if (ids.length) await podman(['rm', '--force', '--time', '0', ...ids], env);
    const images = (await podman(['images', '--no-trunc', '--format', '{{.Repository}} {{.ID}}'], env))
      .split('\n')
      .filter((line) => line.startsWith(repositoryPrefix))
      .map((line) => line.split(' ')[1]!);
    if (images.length) await podman(['rmi', '--force', ...new Set(images)], env);
    const volumes = (await podman(['volume', 'ls', '-q'], env)).split('\n').filter((v) => v.startsWith(label.split('=')[1]!));
    if (volumes.length) await podman(['volume', 'rm', '--force', ...volumes], env);
  } catch (err) {
    console.warn(`container cleanup: ${(err as Error).message}`);
  }
}
