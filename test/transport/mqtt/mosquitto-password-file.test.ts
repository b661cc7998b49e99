import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MosquittoPasswordFile, mosquittoPasswordHash, verifyMosquittoPassword } from '../../../src/region/mqtt/mosquitto-password-file.js';
import { executable, requireTool } from '../../support/requirements.js';

const execFileAsync = promisify(execFile);
/** The broker's own tool, to check that both write and read the same hashes. */
const missing = await requireTool(executable('mosquitto_passwd', 'apt-get install -y mosquitto'));

let dir: string;
let path: string;
let reloads: number;
let logged: string[];

const log = pino({ level: 'warn' }, { write: (line: string) => logged.push((JSON.parse(line) as { msg: string }).msg) });

function open(): MosquittoPasswordFile {
  return MosquittoPasswordFile.open({ path, region: 'eu-west', reload: () => reloads++, log, batchMs: 60_000 });
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cascade-passwd-'));
  path = join(dir, 'passwd');
  reloads = 0;
  logged = [];
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('mosquittoPasswordHash', () => {
  it.skipIf(missing)('writes what mosquitto_passwd writes and reads back what it wrote', async () => {
    const encoded = mosquittoPasswordHash('s3cret');
    expect(encoded).toMatch(/^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
    expect(verifyMosquittoPassword('s3cret', encoded)).toBe(true);
    expect(verifyMosquittoPassword('s3cret!', encoded)).toBe(false);

    writeFileSync(path, '');
    await execFileAsync('mosquitto_passwd', ['-b', path, 'alice', 'from-the-tool']);
    const line = readFileSync(path, 'utf8').trim();
    expect(line.startsWith('alice:$7$101$')).toBe(true);
    expect(verifyMosquittoPassword('from-the-tool', line.slice('alice:'.length))).toBe(true);
  });
});

describe('MosquittoPasswordFile', () => {
  it('keeps the operator\'s lines, writes devices in its own block, and reloads the broker once per batch', () => {
    writeFileSync(path, '# operator accounts\ncascade-region:$7$101$abc$def\n');
    chmodSync(path, 0o640);
    const file = open();
    file.setDevicePassword('dev-b', 'token-b');
    file.setDevicePassword('dev-a', 'token-a');
    expect(reloads).toBe(0);
    file.flush();
    expect(reloads).toBe(1);
    const lines = readFileSync(path, 'utf8').split('\n');
    expect(lines.slice(0, 3)).toEqual(['# operator accounts', 'cascade-region:$7$101$abc$def', '# BEGIN cascade devices of region eu-west: written by `cascade region`; edits inside this block are lost']);
    expect(lines[3]!.startsWith('dev-a:$7$')).toBe(true);
    expect(lines[4]!.startsWith('dev-b:$7$')).toBe(true);
    expect(lines.slice(5)).toEqual(['# END cascade devices of region eu-west', '']);
    expect(verifyMosquittoPassword('token-a', lines[3]!.slice('dev-a:'.length))).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o640);

    // Nothing changed: no write, no reload.
    file.flush();
    expect(reloads).toBe(1);

    // A new token replaces the old one; a removed device loses its line; lines the operator added meanwhile stay.
    writeFileSync(path, `admin:$7$101$x$y\n${readFileSync(path, 'utf8')}`);
    file.setDevicePassword('dev-a', 'token-a2');
    file.removeDevice('dev-b');
    file.close();
    const text = readFileSync(path, 'utf8');
    expect(text.startsWith('admin:$7$101$x$y\n# operator accounts\ncascade-region:')).toBe(true);
    expect(text).not.toContain('dev-b:');
    const entry = text.split('\n').find((l) => l.startsWith('dev-a:'))!;
    expect(verifyMosquittoPassword('token-a2', entry.slice('dev-a:'.length))).toBe(true);

    // A region started again finds its devices in the file.
    expect(open().devices()).toEqual(['dev-a']);
  });

  it('tries a failed write again by itself: the last enrolment of a burst does not wait for another one', async () => {
    writeFileSync(path, 'admin:$7$101$x$y\n');
    // The write goes through a temp file beside it: a directory in its place makes the write fail.
    const temp = `${path}.${process.pid}.tmp`;
    mkdirSync(temp);
    const file = MosquittoPasswordFile.open({ path, region: 'eu-west', reload: () => reloads++, log, batchMs: 20 });
    try {
      file.setDevicePassword('dev-last', 'token-1');
      await until(() => logged.some((m) => m.includes('cannot write the MQTT password file')));
      expect(readFileSync(path, 'utf8')).not.toContain('dev-last:');
      rmSync(temp, { recursive: true });
      // No further change comes; the entry still lands, with a reload.
      await until(() => readFileSync(path, 'utf8').includes('dev-last:'));
      expect(reloads).toBe(1);
    } finally {
      file.close();
    }
  });

  it('never gives a device the name of an operator account, nor one with a colon', () => {
    writeFileSync(path, 'cascade-region:$7$101$abc$def\n');
    const file = open();
    file.setDevicePassword('cascade-region', 'device-token');
    file.setDevicePassword('site:42', 'device-token');
    file.setDevicePassword('dev-a', 'token-a');
    file.flush();
    const text = readFileSync(path, 'utf8');
    expect(text.match(/^cascade-region:/gm)).toHaveLength(1);
    expect(text).toContain('cascade-region:$7$101$abc$def');
    expect(text).not.toContain('site:42');
    expect(file.devices()).toEqual(['dev-a']);
    expect(logged.join('\n')).toMatch(/device cascade-region gets no MQTT credentials: the password file .* has a user of that name outside the region's block/);
    expect(logged.join('\n')).toMatch(/device site:42 gets no MQTT credentials: its id contains ':'/);
  });

  it('says what to do when the file is missing or its block is broken', () => {
    expect(() => open()).toThrow(/cannot read the MQTT password file .*passwd \(--mqtt-device-passwords\).*create it/);
    writeFileSync(path, '# END cascade devices of region eu-west\n');
    expect(() => open()).toThrow(/the block of region eu-west is broken/);
  });
});

/** Waits (without a deadline of its own: the test's timeout ends it) until `check` holds. */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 10));
}

describe('MosquittoPasswordFile memory', () => {
  it("keeps nothing of the file's text between writes (an operator name long enough to be a slice of it kept it all)", () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const block = Array.from({ length: 100_000 }, (_, i) => `device-${String(i).padStart(6, '0')}:${mosquittoPasswordHash('t', undefined, 1)}`);
    const text = ['cascade-region-account:' + mosquittoPasswordHash('r', undefined, 1), '# BEGIN cascade devices of region eu-west: written by `cascade region`; edits inside this block are lost', ...block, '# END cascade devices of region eu-west', ''].join('\n');
    writeFileSync(path, text);
    // The file is ~13 MB; what the open file keeps is its reserved names and a count.
    expect(text.length).toBeGreaterThan(12_000_000);
    block.length = 0;
    gc();
    const before = process.memoryUsage().heapUsed;
    const file = open();
    file.setDevicePassword('one-more-device', 'token');
    file.flush();
    gc();
    const kept = process.memoryUsage().heapUsed - before;
    expect(kept).toBeLessThan(2 * 2 ** 20);
    expect(file.devices()).toHaveLength(100_001);
    file.close();
  });
});
