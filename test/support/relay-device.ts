import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { downloadFromRelay, type RelayDownloadResult } from '../../src/agent/download.js';
import { RegionClient } from '../../src/agent/http/region-client.js';
import type { FileArtifact } from '../../src/core/app-spec.js';
import type { Labels } from '../../src/core/types.js';
import type { DesiredAppWire } from '../../src/protocol/types.js';

/**
 * A device simulated in the test process that does what the agent does with a relayed artifact
 * (the same RegionClient and downloadFromRelay), without running install commands.
 */
export class RelayDevice {
  readonly client: RegionClient;
  /** app -> { version, file } of what it runs. */
  readonly running = new Map<string, { version: string; file: string }>();
  readonly downloads: Array<RelayDownloadResult & { app: string; version: string }> = [];

  constructor(regionUrl: string, readonly id: string, readonly dir: string, private readonly opts: { zstd?: string } = {}) {
    this.client = new RegionClient({ regionUrl, deviceId: id });
  }

  async enroll(labels: Labels, token: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await this.client.enroll(labels, token);
    await this.report();
  }

  async report(): Promise<void> {
    const apps: Record<string, { version: string | null; state: 'healthy' }> = {};
    for (const [app, { version }] of this.running) apps[app] = { version, state: 'healthy' };
    await this.client.report({ apps });
  }

  async desired(): Promise<Record<string, DesiredAppWire>> {
    const answer = await this.client.getDesired(null, 0);
    return answer.status === 200 ? answer.body.apps : {};
  }

  /** Installs what the region hands out that it does not run yet; returns the apps updated. */
  async sync(): Promise<string[]> {
    const updated: string[] = [];
    for (const [app, wire] of Object.entries(await this.desired())) {
      if (this.running.get(app)?.version === wire.version) continue;
      const artifact = wire.artifact as FileArtifact | undefined;
      if (!artifact || !wire.relay) throw new Error(`${this.id}: ${app} ${wire.version} is not relayed: ${JSON.stringify(wire)}`);
      const file = join(this.dir, `${app}-${wire.version}`);
      const result = await downloadFromRelay(artifact, wire.relay, file, {
        source: { regionUrl: this.client.regionUrl, token: () => this.client.token },
        current: this.running.get(app)?.file ?? null,
        zstd: this.opts.zstd,
        retryDelayMs: 20,
      });
      if (!existsSync(file)) throw new Error(`${this.id}: ${file} missing after download`);
      this.downloads.push({ ...result, app, version: wire.version });
      this.running.set(app, { version: wire.version, file });
      updated.push(app);
    }
    if (updated.length > 0) await this.report();
    return updated;
  }
}
