import { mkdtempSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ContainerRuntime } from '../../../src/core/app-spec.js';
import { AppApplyError } from '../../../src/agent/apply-error.js';
import { containerName, createArgs, imageOf, memoryBytes, repositoryOf, splitWords } from '../../../src/agent/runtime-container.js';

const DIGEST = `sha256:${'b'.repeat(64)}`;
const container = { name: 'cascade-web-1.0.0', image: `registry.local/web@${DIGEST}`, digest: DIGEST, revision: 'abc123' };
const opts = { deviceId: 'dev-1', engine: 'podman' as const, volumePrefix: 'cascade' };
const spec = (extra: Partial<ContainerRuntime> = {}): ContainerRuntime => ({ type: 'container', image: 'registry.local/web', ...extra });
const refusal = (extra: Partial<ContainerRuntime>, version = '1.0.0'): AppApplyError => {
  try {
    createArgs('web', version, spec(extra), container, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(AppApplyError);
    expect((err as AppApplyError).touchedPrevious).toBe(false);
    return err as AppApplyError;
  }
  throw new Error('expected a refusal');
};

const scratch = mkdtempSync(join(tmpdir(), 'cascade-args-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('engine arguments from a run spec', () => {
  it('puts every value in one argument, and the command line after the image', () => {
    const args = createArgs(
      'web',
      '1.0.0',
      spec({
        command: ['/app', '--privileged'],
        args: ['--network=host', '$(id)', '; rm -rf /'],
        env: { A: 'x --privileged', B: '$(reboot)\nnext line' },
        ports: [{ container: 80, host: 8080, hostIp: '127.0.0.1' }, { container: 53, protocol: 'udp' }],
        volumes: [{ name: 'data', target: '/data' }],
        resources: { memory: '256Mi', cpus: 1.5 },
        devices: [{ path: '/dev/apex_0', permissions: 'rw' }],
        network: 'host',
        user: '1000:1000',
      }),
      container,
      opts,
    );
    const image = args.indexOf(container.image);
    expect(args.slice(image)).toEqual([container.image, '--privileged', '--network=host', '$(id)', '; rm -rf /']);
    expect(args.slice(0, image)).not.toContain('--privileged');
    expect(args).toEqual(expect.arrayContaining(['--env', 'A=x --privileged', '--env', 'B=$(reboot)\nnext line']));
    expect(args).toEqual(expect.arrayContaining(['--publish', '127.0.0.1:8080:80/tcp', '--publish', '53:53/udp']));
    expect(args).toEqual(expect.arrayContaining(['--volume', 'cascade-web-data:/data', '--memory', String(256 * 1024 * 1024), '--cpus', '1.5']));
    expect(args).toEqual(expect.arrayContaining(['--device', '/dev/apex_0:/dev/apex_0:rw', '--network', 'host', '--user', '1000:1000', '--entrypoint', '/app']));
    expect(args).toEqual(expect.arrayContaining(['--label', 'io.cascade.app=web', '--label', 'io.cascade.version=1.0.0', '--label', 'io.cascade.device=dev-1', '--label', `io.cascade.digest=${DIGEST}`, '--label', 'io.cascade.revision=abc123']));
  });

  it('refuses what the Region does not allow, before anything is pulled', () => {
    expect(refusal({ privileged: true }).message).toContain('runtime.privileged');
    expect(refusal({ volumes: [{ hostPath: '/etc', target: '/etc' }] }).code).toBe('container-not-allowed');
    expect(refusal({ anyHostPath: true, volumes: [{ hostPath: '/etc', target: '/etc' }], regionPolicy: { hostPaths: ['/srv'] } }).message).toContain('does not set spec.containers.allowAnyHostPath');
    // Both opted in: allowed.
    const args = createArgs('web', '1', spec({ privileged: true, anyHostPath: true, volumes: [{ hostPath: '/etc', target: '/h' }], regionPolicy: { allowPrivileged: true, allowAnyHostPath: true } }), container, opts);
    expect(args).toEqual(expect.arrayContaining(['--privileged', '--volume', '/etc:/h']));
  });

  it('resolves symbolic links before checking the allow-list', () => {
    const allowed = join(scratch, 'allowed');
    mkdirSync(allowed, { recursive: true });
    symlinkSync('/etc', join(allowed, 'escape'));
    const error = refusal({ volumes: [{ hostPath: join(allowed, 'escape'), target: '/x' }], regionPolicy: { hostPaths: [allowed] } });
    expect(error.message).toContain('(/etc on the device)');
    mkdirSync(join(allowed, 'inside'));
    expect(createArgs('web', '1', spec({ volumes: [{ hostPath: join(allowed, 'inside'), target: '/x' }], regionPolicy: { hostPaths: [allowed] } }), container, opts)).toContain(`${join(allowed, 'inside')}:/x`);
  });

  it('refuses hostile values that got past the schema (a device trusts no one)', () => {
    const cases: Array<Partial<ContainerRuntime>> = [
      { env: { 'A B': 'x' } },
      { env: { 'PATH*': 'x' } },
      { env: { A: 'nul\u0000byte' } },
      { network: 'container:victim' },
      { network: 'ns:/proc/1/ns/net' },
      { user: '0 --privileged' },
      { volumes: [{ name: 'x', target: '/a:/b' }] },
      { volumes: [{ name: '../escape', target: '/a' }] },
      { volumes: [{ name: 'x', target: '/a/../../etc' }] },
      { devices: [{ path: '/dev/../etc/shadow' }] },
      { devices: [{ path: '/etc/shadow' }] },
      { ports: [{ container: 0 }] },
      { ports: [{ container: 80, hostIp: '0.0.0.0 --privileged' }] },
      { resources: { memory: '1e9' } },
      { command: ['["/bin/sh","-c","id"]'] },
      { args: ['ok', 'nul\u0000'] },
      { stopGracePeriod: 'forever' },
    ];
    for (const extra of cases) expect(refusal(extra).code, JSON.stringify(extra)).toMatch(/^container-(spec-invalid|not-allowed)$/);
    expect(refusal({}, 'v1\n--privileged').code).toBe('container-spec-invalid');
  });

  it('takes the image by digest from the artifact, never a tag', () => {
    const target = (artifact: unknown) => ({ version: '1', deployment: 'd', artifact } as Parameters<typeof imageOf>[1]);
    expect(imageOf('web', target({ image: 'reg:5000/team/web:1.0', digest: DIGEST }), spec())).toEqual({ repository: 'reg:5000/team/web', digest: DIGEST });
    expect(() => imageOf('web', target(undefined), spec())).toThrow(/pulled by digest only/);
    expect(() => imageOf('web', target({ image: 'reg/web:1', digest: 'sha256:short' }), spec())).toThrow(/64 lowercase hex/);
    expect(() => imageOf('web', target({ image: '--privileged', digest: DIGEST }), spec())).toThrow(/not an image repository/);
    expect(() => imageOf('web', target({ url: 'http://x/a.tgz', sha256: 'a'.repeat(64), size: 1 }), spec())).toThrow(/no image artifact/);
  });
});

describe('helpers', () => {
  it('splits health check commands into words without a shell', () => {
    expect(splitWords(`wget -q -O - 'http://127.0.0.1/health z' "a \\"b\\"" c\\ d`)).toEqual(['wget', '-q', '-O', '-', 'http://127.0.0.1/health z', 'a "b"', 'c d']);
    expect(splitWords('test -f /tmp/x; reboot')).toEqual(['test', '-f', '/tmp/x;', 'reboot']);
    expect(splitWords("''")).toEqual(['']);
    expect(() => splitWords('"open')).toThrow(/unclosed/);
  });

  it('reads repositories, sizes and names', () => {
    expect(repositoryOf('localhost:5000/a/b:1.2')).toBe('localhost:5000/a/b');
    expect(repositoryOf('localhost:5000/a/b')).toBe('localhost:5000/a/b');
    expect(repositoryOf(`a/b@${DIGEST}`)).toBe('a/b');
    expect(memoryBytes('256Mi')).toBe(268435456);
    expect(memoryBytes('1G')).toBe(1073741824);
    expect(memoryBytes('512')).toBe(512);
    expect(containerName('cascade', 'web', '1.0.0')).toBe('cascade-web-1.0.0');
    expect(containerName('cascade', 'web', '1.0.0+build/7')).toMatch(/^cascade-web-1\.0\.0_build_7-[0-9a-f]{8}$/);
    expect(containerName('cascade', 'web', '1.0.0+build_7')).not.toBe(containerName('cascade', 'web', '1.0.0+build/7'));
  });
});

describe('finding the engine', () => {
  it('says what to do when no engine runs, and fails the install without touching the running version', async () => {
    const { ContainerEngine, ENGINE_MISSING } = await import('../../../src/agent/container-engine.js');
    await expect(ContainerEngine.open({ command: join(scratch, 'no-such-engine') })).rejects.toMatchObject({ code: ENGINE_MISSING, message: expect.stringMatching(/--container-engine .*no-such-engine cannot run/) });
    const { ContainerAppRuntime } = await import('../../../src/agent/runtime-container.js');
    const { pino } = await import('pino');
    const runtime = new ContainerAppRuntime({ deviceId: 'dev-1', engine: { command: join(scratch, 'no-such-engine') } });
    const target = { version: '1.0.0', deployment: 'd', runtime: spec(), artifact: { image: 'registry.local/web:1.0.0', digest: DIGEST } };
    const error = await runtime.install('web', target, null, new AbortController().signal, pino({ level: 'silent' })).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(AppApplyError);
    expect(error).toMatchObject({ code: ENGINE_MISSING, touchedPrevious: false });
  });

  it('refuses a container name prefix that is not a name', async () => {
    const { ContainerAppRuntime } = await import('../../../src/agent/runtime-container.js');
    expect(() => new ContainerAppRuntime({ deviceId: 'd', namePrefix: '--privileged' })).toThrow(/container name prefix/);
  });
});
