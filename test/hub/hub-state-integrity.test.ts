import { mkdtempSync, openSync, rmSync, statSync, truncateSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HUB_STATE_FILE_NAME, HubStore } from '../../src/storage/hub-store.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cascade-hub-integrity-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('the hub checks its state database at start', () => {
  it('refuses a damaged file with the restore steps', () => {
    HubStore.open(dir).close();
    const path = join(dir, HUB_STATE_FILE_NAME);
    const fd = openSync(path, 'r+');
    const size = Math.max(statSync(path).size, 8192);
    writeSync(fd, Buffer.alloc(size - 4096, 0x5a), 0, size - 4096, 4096);
    closeSync(fd);
    expect(() => HubStore.open(dir)).toThrow(/is damaged .*refusing to start on it: to restore: stop the hub/);
  });

  it('never starts empty over a folder that held a state, unless told to', () => {
    HubStore.open(dir).close();
    truncateSync(join(dir, HUB_STATE_FILE_NAME), 0);
    expect(() => HubStore.open(dir)).toThrow(/empty \(0 bytes\), but .* held a hub state before/);
    HubStore.open(dir, { initState: true }).close();
    HubStore.open(dir).close();
  });
});
