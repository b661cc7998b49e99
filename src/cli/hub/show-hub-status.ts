import { renderHubStatus, renderRevision } from '../render/render-fleet.js';
import { fetchFleet, fetchRecentRevisions, fetchRevision } from './fetch-fleet.js';

export interface ShowHubStatusOptions {
  hubUrl: string;
  token?: string;
  /** One commit (sha or unique prefix) instead of the fleet. */
  revision?: string;
  json?: boolean;
  /** Recent commits listed with the fleet. */
  recent?: number;
  out?: (text: string) => void;
}

/** `cascade status --hub-url`: the fleet and its recent commits, or one commit, as text or JSON. */
export async function showHubStatus(opts: ShowHubStatusOptions): Promise<void> {
  const out = opts.out ?? ((text: string) => process.stdout.write(text));
  const read = { hubUrl: opts.hubUrl, token: opts.token };
  if (opts.revision) {
    const view = await fetchRevision(read, opts.revision);
    out(opts.json ? `${JSON.stringify(view, null, 2)}\n` : `${renderRevision(view)}\n`);
    return;
  }
  const [fleet, revisions] = await Promise.all([fetchFleet(read), fetchRecentRevisions(read, opts.recent ?? 5)]);
  out(opts.json ? `${JSON.stringify({ fleet, revisions }, null, 2)}\n` : `${renderHubStatus(fleet, revisions)}\n`);
}
