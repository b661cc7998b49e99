import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { imageExists, podman, RUNTIME_FLAGS } from './podman.js';

/**
 * Builds the project's own Dockerfile on a machine where no registry and no apt mirror are
 * reachable, so neither `node:20-bookworm-slim` nor the deps stage's compilers can be had:
 *
 * - BASE is `localhost/node-base:20`, made from this machine's node binary by
 *   scripts/container-base-image.sh;
 * - node_modules come from the Dockerfile's `deps-prebuilt` stage (`--build-arg DEPS=deps-prebuilt`):
 *   a copy of this checkout's node_modules pruned to production dependencies
 *   (`npm prune --omit=dev`), whose better-sqlite3 addon was built for this very node and libc;
 * - the TypeScript compiler that makes dist/ comes from the `build-tools-prebuilt` stage
 *   (`--build-arg BUILD_TOOLS=build-tools-prebuilt`): a copy of this checkout's `typescript` package.
 *
 * Every other instruction (user, volume, files, health check, entrypoint) is the one real users build.
 * Both the pruned node_modules and the image are cached: the image is tagged with a hash of
 * everything that goes into it, so an unchanged checkout reuses it without building.
 */

const execFileAsync = promisify(execFile);

export const ROOT = resolve(import.meta.dirname, '../..');
export const BASE_IMAGE = 'localhost/node-base:20';
const IMAGE_REPOSITORY = 'localhost/cascade-test';
const CACHE_DIR = process.env['CASCADE_CONTAINER_CACHE'] ?? '/var/tmp/cascade-container-cache';
const NODE_VERSION_LABEL = 'org.cascade.node-version';
/** What the Dockerfile copies from the build context (see .dockerignore). */
const CONTEXT_FILES = ['Dockerfile', '.dockerignore', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build-dist.mjs'];
const CONTEXT_DIRS = ['bin', 'src', 'schemas', 'fleet-repo-template'];

/**
 * Why containers cannot run on this machine, or null when they can. Only the environment is
 * checked (podman, its runtime, the base image); the project's Dockerfile is not involved, so
 * a broken Dockerfile fails the test instead of skipping it.
 */
export async function containerEnvironmentProblem(): Promise<string | null> {
  try {
    await podman(['--version'], { timeoutMs: 15_000 });
  } catch {
    return 'podman is not installed (Debian: apt-get install -y podman runc busybox-static)';
  }
  if (process.getuid && process.getuid() !== 0) {
    return `the container test runs podman as root (to hand the state volume to uid 10001); this is uid ${process.getuid()}`;
  }
  try {
    await podman(['info'], { timeoutMs: 60_000 });
  } catch (err) {
    return `podman info fails: ${(err as Error).message}`;
  }
  try {
    await ensureBaseImage();
  } catch (err) {
    return `cannot make the base image ${BASE_IMAGE}: ${(err as Error).message}`;
  }
  try {
    const out = await podman(['run', '--rm', ...RUNTIME_FLAGS, '--network=host', BASE_IMAGE, 'node', '-e', 'process.stdout.write("ok")'], { timeoutMs: 60_000 });
    if (out !== 'ok') return `a container of ${BASE_IMAGE} printed ${JSON.stringify(out)} instead of "ok"`;
  } catch (err) {
    return `podman cannot run a container here: ${(err as Error).message}`;
  }
  return null;
}

/** Makes BASE_IMAGE from this machine's node, unless it exists already for this node version. */
export async function ensureBaseImage(): Promise<void> {
  if (await imageExists(BASE_IMAGE)) {
    const label = await podman(['image', 'inspect', '--format', `{{ index .Config.Labels "${NODE_VERSION_LABEL}" }}`, BASE_IMAGE]);
    if (label === process.version) return;
  }
  const addon = join(ROOT, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node');
  try {
    await execFileAsync('bash', [join(ROOT, 'scripts/container-base-image.sh'), BASE_IMAGE], {
      env: { ...process.env, CASCADE_BASE_EXTRA_BINARIES: addon },
      timeout: 180_000,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(e.stderr?.trim() || e.message);
  }
}

export interface BuiltImage {
  tag: string;
  /** False when an image of the same inputs existed already. */
  built: boolean;
  seconds: number;
}

/** The project's Dockerfile built into an image tagged by the hash of its inputs (reused when it exists). */
export async function buildCascadeImage(): Promise<BuiltImage> {
  const started = Date.now();
  const baseId = await podman(['image', 'inspect', '--format', '{{.Id}}', BASE_IMAGE]);
  const tag = `${IMAGE_REPOSITORY}:${(await hashContext(baseId)).slice(0, 20)}`;
  if (await imageExists(tag)) return { tag, built: false, seconds: (Date.now() - started) / 1000 };

  const nodeModules = await prunedNodeModules();
  const buildTools = await typescriptOnly();
  await podman(
    [
      'build',
      ...RUNTIME_FLAGS,
      // The OCI format drops HEALTHCHECK; the docker format keeps it, as `docker build` does.
      '--format', 'docker',
      '--build-arg', `BASE=${BASE_IMAGE}`,
      '--build-arg', 'DEPS=deps-prebuilt',
      '--build-context', `prebuilt=${nodeModules}`,
      '--build-arg', 'BUILD_TOOLS=build-tools-prebuilt',
      '--build-context', `prebuilt-build-tools=${buildTools}`,
      '--tag', tag,
      '--file', join(ROOT, 'Dockerfile'),
      ROOT,
    ],
    { timeoutMs: 300_000 },
  );
  await removeOlderImages(tag);
  return { tag, built: true, seconds: (Date.now() - started) / 1000 };
}

async function hashContext(baseId: string): Promise<string> {
  const hash = createHash('sha256').update(`base ${baseId}\n`);
  const files = [...CONTEXT_FILES];
  for (const dir of CONTEXT_DIRS) files.push(...(await listFiles(join(ROOT, dir))).map((f) => relative(ROOT, f)));
  for (const file of files.sort()) {
    hash.update(`${file}\n`);
    hash.update(await readFile(join(ROOT, file)));
  }
  return hash.digest('hex');
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(full)));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

/**
 * This checkout's node_modules pruned to production dependencies, in a cache folder keyed by
 * the lock file and the node version: `npm ci --omit=dev` would need the registry and a compiler
 * for better-sqlite3; pruning a copy needs neither.
 */
async function prunedNodeModules(): Promise<string> {
  const key = createHash('sha256')
    .update(await readFile(join(ROOT, 'package.json')))
    .update(await readFile(join(ROOT, 'package-lock.json')))
    .update(`${process.version} ${process.platform} ${process.arch}`)
    .digest('hex')
    .slice(0, 20);
  const dir = join(CACHE_DIR, `node_modules-${key}`);
  const result = join(dir, 'node_modules');
  if (await exists(join(result, '.package-lock.json'))) return result;

  await mkdir(CACHE_DIR, { recursive: true });
  const staging = `${dir}.tmp-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging);
  await execFileAsync('cp', ['-a', join(ROOT, 'node_modules'), staging], { timeout: 180_000 });
  await copyFile(join(ROOT, 'package.json'), join(staging, 'package.json'));
  await copyFile(join(ROOT, 'package-lock.json'), join(staging, 'package-lock.json'));
  try {
    await execFileAsync('npm', ['prune', '--omit=dev', '--offline', '--no-audit', '--no-fund'], { cwd: staging, timeout: 180_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    await rm(staging, { recursive: true, force: true });
    throw new Error(`npm prune --omit=dev failed in ${staging}: ${e.stderr?.trim() || e.message}`);
  }
  for (const scratch of ['.cache', '.vite', '.vitest']) await rm(join(staging, 'node_modules', scratch), { recursive: true, force: true });

  try {
    await rename(staging, dir);
  } catch {
    // Another test run finished the same folder first: use theirs.
    await rm(staging, { recursive: true, force: true });
  }
  for (const entry of await readdir(CACHE_DIR)) {
    if (entry.startsWith('node_modules-') && !entry.includes('.tmp-') && entry !== `node_modules-${key}`) {
      await rm(join(CACHE_DIR, entry), { recursive: true, force: true });
    }
  }
  return result;
}

/**
 * A node_modules folder holding only this checkout's `typescript`, all the image's build stage
 * needs to make dist/ (it emits without type checking), cached by the compiler's version.
 */
async function typescriptOnly(): Promise<string> {
  const source = join(ROOT, 'node_modules', 'typescript');
  const { version } = JSON.parse(await readFile(join(source, 'package.json'), 'utf8')) as { version: string };
  const dir = join(CACHE_DIR, `build-tools-typescript-${version}`);
  if (await exists(join(dir, 'typescript', 'package.json'))) return dir;
  await mkdir(CACHE_DIR, { recursive: true });
  const staging = `${dir}.tmp-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging);
  await execFileAsync('cp', ['-a', source, join(staging, 'typescript')], { timeout: 180_000 });
  try {
    await rename(staging, dir);
  } catch {
    // Another test run finished the same folder first: use theirs.
    await rm(staging, { recursive: true, force: true });
  }
  return dir;
}

/** Keeps one test image: the older ones differ only in their sources and would fill the disk. */
async function removeOlderImages(keep: string): Promise<void> {
  const tags = (await podman(['images', '--format', '{{.Repository}}:{{.Tag}}', IMAGE_REPOSITORY])).split('\n').filter(Boolean);
  for (const tag of tags) {
    if (tag === keep) continue;
    try {
      await podman(['rmi', tag]);
    } catch {
      // still used by a container of another test run; a later run removes it
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
