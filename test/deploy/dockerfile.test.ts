import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

/**
 * What the Dockerfile promises, read from the file: these hold on machines where the image
 * cannot be built (test/container/ builds and runs it where podman works).
 */

const ROOT = resolve(import.meta.dirname, '../..');

interface Stage {
  from: string;
  name: string | null;
  instructions: Array<{ op: string; args: string }>;
}

let globalArgs: Map<string, string>;
let stages: Stage[];
let dockerignore: string[];

beforeAll(async () => {
  const text = (await readFile(join(ROOT, 'Dockerfile'), 'utf8')).replace(/\\\n/g, ' ');
  globalArgs = new Map();
  stages = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [, op, args] = /^(\w+)\s+(.*)$/.exec(line)!;
    const instruction = { op: op!.toUpperCase(), args: args!.trim() };
    if (instruction.op === 'FROM') {
      const [, from, name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args)!;
      stages.push({ from: from!, name: name ?? null, instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.op === 'ARG') {
        const [key, value] = instruction.args.split('=');
        globalArgs.set(key!, value ?? '');
      }
    } else {
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  dockerignore = (await readFile(join(ROOT, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
});

const stage = (name: string) => {
  const found = stages.find((s) => s.name === name);
  expect(found, `stage ${name}`).toBeDefined();
  return found!;
};
const ops = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op).map((i) => i.args);

describe('Dockerfile', () => {
  it('takes a replaceable base image, node:20-bookworm-slim by default', () => {
    expect(globalArgs.get('BASE')).toBe('node:20-bookworm-slim');
    expect(globalArgs.get('BUILD_BASE')).toBe('${BASE}');
    expect(stages.at(-1)!.from).toBe('${BASE}');
  });

  it('builds production dependencies, compilers included, in a stage of their own', () => {
    const deps = stage('deps');
    expect(deps.from).toBe('${BUILD_BASE}');
    const run = ops(deps, 'RUN').join('\n');
    expect(run).toMatch(/apt-get install .*python3 make g\+\+/);
    expect(run).toContain('npm ci --omit=dev');
    expect(ops(deps, 'COPY')).toEqual(['package.json package-lock.json ./']);
    expect(globalArgs.get('DEPS'), 'real builds use the deps stage').toBe('deps');
    expect(stage('dependencies').from).toBe('${DEPS}');
  });

  it('the default (last) stage runs as uid 10001 with state in a volume, a health check and `cascade region`', () => {
    const runtime = stages.at(-1)!;
    expect(runtime.name).toBe('runtime');
    expect(ops(runtime, 'USER')).toEqual(['10001:10001']);
    expect(ops(runtime, 'VOLUME')).toEqual(['["/var/lib/cascade"]']);
    expect(ops(runtime, 'ENV').join(' ')).toContain('CASCADE_DATA=/var/lib/cascade');
    expect(ops(runtime, 'ENTRYPOINT')).toEqual(['["node", "/app/bin/cascade.js"]']);
    expect(ops(runtime, 'CMD')).toEqual(['["region"]']);
    expect(ops(runtime, 'HEALTHCHECK').join('')).toContain('/healthz');
    // Compilers and apt stay out of the image users run.
    expect(ops(runtime, 'RUN').join('\n')).not.toMatch(/apt-get|npm /);
    expect(ops(runtime, 'COPY')).toContain('--from=dependencies /app/node_modules ./node_modules');
  });

  it('copies every folder the sources read at run time, and the build context admits them', async () => {
    const copied = ops(stages.at(-1)!, 'COPY').filter((c) => !c.startsWith('--from')).flatMap((c) => c.split(/\s+/).slice(0, -1));
    const needed = new Set(['bin', 'src', 'package.json']);
    for (const file of await listFiles(join(ROOT, 'src'))) {
      const text = await readFile(file, 'utf8');
      for (const match of text.matchAll(/new URL\('(?:\.\.\/)+([\w-]+)\/?[^']*', import\.meta\.url\)/g)) needed.add(match[1]!);
    }
    expect(needed.has('schemas')).toBe(true);
    for (const path of needed) {
      expect(copied, `the image has ${path}`).toContain(path);
      expect(dockerignore, `.dockerignore admits ${path}`).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`^!${path}/?$`))]));
    }
    // Everything else stays out: node_modules, .git, tests, local state.
    expect(dockerignore[0]).toBe('*');
  });
});

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(full)));
    else if (entry.name.endsWith('.ts')) out.push(full);
  }
  return out;
}
