#!/usr/bin/env node
// `npm run build`: compiles src/ to dist/ with tsc (tsconfig.build.json), copies the files that are
// not TypeScript (the dashboard's static files), and stamps dist/ with the fingerprints of the
// sources it was compiled from, so bin/cascade.js runs dist/ only while it matches src/.
//
//   node scripts/build-dist.mjs               build
//   node scripts/build-dist.mjs --if-stale    build unless dist/ already matches src/
//   node scripts/build-dist.mjs --check       exit 0 when dist/ matches src/, 1 when not; builds nothing
//   node scripts/build-dist.mjs --if-possible build, or say why not and exit 0 when src/ or the
//                                             TypeScript compiler is absent (`prepare` after
//                                             `npm ci --omit=dev`)
//
// Only emits: type checking is `npm run typecheck`'s job (tsx never checked types either), which
// keeps the build quick and lets it run with the compiler alone.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  DIST_DIR,
  ROOT,
  SRC_DIR,
  STAMP_NAME,
  contentFingerprint,
  distIsCurrent,
  listSourceFiles,
  readStamp,
  statFingerprint,
} from '../bin/dist-freshness.js';

const flags = new Set(process.argv.slice(2));
const say = (line) => process.stderr.write(`build: ${line}\n`);

function skipOrFail(reason) {
  if (flags.has('--if-possible')) {
    say(`nothing built: ${reason}`);
    process.exit(0);
  }
  say(`cannot build: ${reason}`);
  process.exit(1);
}

if (flags.has('--check')) process.exit((await distIsCurrent()) ? 0 : 1);
if (!existsSync(SRC_DIR)) skipOrFail(`no sources in ${SRC_DIR}`);
if (flags.has('--if-stale') && (await distIsCurrent())) {
  say('dist/ is up to date');
  process.exit(0);
}

let tsc;
try {
  tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  skipOrFail('the TypeScript compiler (devDependency typescript) is not installed, so bin/cascade.js runs the sources through tsx; `npm ci` with dev dependencies installs it');
}

// Fingerprints taken before compiling: a file edited while tsc runs makes the stamp stale, not wrong.
const files = listSourceFiles();
const stamp = { stat: statFingerprint(files), content: await contentFingerprint(files) };

// Built aside and swapped in by renames, so a process starting meanwhile never sees half a dist/.
const staging = `${DIST_DIR}.tmp-${process.pid}`;
const retired = `${DIST_DIR}.old-${process.pid}`;
rmSync(staging, { recursive: true, force: true });
const compiled = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', staging], { cwd: ROOT, stdio: 'inherit' });
if (compiled.status !== 0) {
  rmSync(staging, { recursive: true, force: true });
  say(`tsc failed (${compiled.error?.message ?? `exit ${compiled.status ?? compiled.signal}`}); dist/ left as it was`);
  process.exit(1);
}
for (const file of files) {
  if (file.endsWith('.ts')) continue;
  const target = join(staging, relative(SRC_DIR, file));
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(file, target);
}
// The schemas compiled to JavaScript once here rather than by ajv at every start (src/desired/schemas.ts,
// which uses them only while they match schemas/, and compiles them itself otherwise).
try {
  const { PRECOMPILED_VALIDATORS, precompiledValidatorsSource } = await import(pathToFileURL(join(staging, 'desired', 'schemas.js')).href);
  writeFileSync(join(staging, 'desired', PRECOMPILED_VALIDATORS), precompiledValidatorsSource());
} catch (err) {
  say(`schemas not precompiled (${err?.message ?? err}); validation compiles them at start`);
}
// What `cascade --help` lists of each command, so that it need not load every command's module.
try {
  const { Command } = await import('commander');
  const commands = await import(pathToFileURL(join(staging, 'cli', 'commands', 'index.js')).href);
  const program = new Command('cascade');
  await commands.registerCommands(program, ['help']);
  writeFileSync(join(staging, 'cli', 'commands', commands.HELP_SUMMARY_FILE), `${JSON.stringify(commands.commandSummaries(program))}\n`);
} catch (err) {
  say(`help summary not written (${err?.message ?? err}); \`cascade --help\` loads every command`);
}
writeFileSync(join(staging, STAMP_NAME), `${JSON.stringify(stamp)}\n`);

if (existsSync(DIST_DIR)) renameSync(DIST_DIR, retired);
try {
  renameSync(staging, DIST_DIR);
} catch (err) {
  // Another build swapped its dist/ in first; keep it if it is of the same sources.
  rmSync(staging, { recursive: true, force: true });
  if (readStamp()?.content !== stamp.content) throw err;
}
rmSync(retired, { recursive: true, force: true });
say(`compiled ${files.filter((f) => f.endsWith('.ts')).length} files to ${relative(ROOT, DIST_DIR)}/`);
