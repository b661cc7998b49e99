import fs from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { urlFlag } from '../parse-flags.js';
import type { RevisionView } from '../../hub/views.js';
import type { RegionStatus } from '../../protocol/region-status.js';
import { fetchRecentRevisions } from '../hub/fetch-fleet.js';
import { callRegion } from '../region-api.js';
import { secretFrom } from '../secrets.js';

interface HistoryFlags {
  hubUrl?: string;
  hubToken?: string;
  regionUrl?: string;
  operatorToken?: string;
  repo?: string;
  limit: number;
  json?: boolean;
}

function limitFlag(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new InvalidArgumentError(`"${value}" must be a whole number from 1 to 200.`);
  return n;
}

/**
 * `cascade history`: the fleet's recent revisions, newest first, with where each was applied, refused
 * or halted, from the hub. A region keeps only its applied and its last attempted revision (it has no
 * history endpoint), so `--region-url` shows those two. `--repo DIR` adds commit subjects and authors
 * from a local clone.
 */
export function registerHistory(program: Command): void {
  program
    .command('history')
    .description('recent revisions, newest first: where each was applied, refused or halted (from the hub; a region knows only its applied and last attempted one)')
    .addOption(new Option('--hub-url <url>', 'URL of the hub').env('CASCADE_HUB_URL').argParser(urlFlag))
    .addOption(new Option('--hub-token <token>', "the hub's read token, when it requires one").env('CASCADE_HUB_READ_TOKEN'))
    .addOption(new Option('--region-url <url>', 'URL of a region instead of the hub').env('CASCADE_REGION_URL').argParser(urlFlag))
    .addOption(new Option('--operator-token <token>', "the region's operator token").env('CASCADE_OPERATOR_TOKEN'))
    .option('--repo <dir>', 'a clone of the fleet repository: show each commit\'s subject and author (default: the current folder, when it is a clone)')
    .addOption(new Option('--limit <n>', 'how many revisions').default(10).argParser(limitFlag))
    .option('--json', 'print JSON')
    .action(async (flags: HistoryFlags) => {
      // Inside a clone of the fleet repository, its commits name the revisions.
      const here = fs.existsSync(join(process.cwd(), '.git', 'objects')) ? process.cwd() : undefined;
      const repo = flags.repo ?? here;
      const subjects = repo !== undefined ? commitReader(repo) : null;
      if (flags.hubUrl && !flags.regionUrl) {
        const revisions = await fetchRecentRevisions({ hubUrl: flags.hubUrl, token: secretFrom(flags.hubToken, 'CASCADE_HUB_READ_TOKEN') }, flags.limit);
        const rows = await Promise.all(revisions.map(async (view) => ({ ...historyRow(view), commit: (await subjects?.(view.revision)) ?? null })));
        if (flags.json) {
          process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
          return;
        }
        if (rows.length === 0) process.stdout.write('no region has reported a revision to the hub yet\n');
        for (const row of rows) process.stdout.write(renderRow(row) + '\n');
        return;
      }
      if (!flags.regionUrl) throw new CascadeError('history-url-required', 'history: say what to ask: --hub-url URL (the fleet\'s revisions) or --region-url URL (one region), or use a context (`cascade context add`)');
      const status = await callRegion<RegionStatus>(flags.regionUrl, 'GET', '/api/v1/status', { token: secretFrom(flags.operatorToken, 'CASCADE_OPERATOR_TOKEN') });
      const { applied, attempted, error } = status.revision;
      const entries = [
        ...(attempted && attempted !== applied ? [{ revision: attempted, outcome: error ? 'refused' : 'attempted', errors: error ?? [] }] : []),
        ...(applied ? [{ revision: applied, outcome: 'applied', errors: [] as string[] }] : []),
      ];
      const withCommits = await Promise.all(entries.map(async (e) => ({ region: status.region, ...e, commit: (await subjects?.(e.revision)) ?? null })));
      if (flags.json) {
        process.stdout.write(JSON.stringify(withCommits, null, 2) + '\n');
        return;
      }
      process.stderr.write(`cascade: a region keeps only its applied and last attempted revision; for the fleet's history ask the hub (--hub-url)\n`);
      if (withCommits.length === 0) process.stdout.write(`region ${status.region} has not attempted a revision yet\n`);
      for (const e of withCommits) {
        process.stdout.write(`${e.revision.slice(0, 8)}  ${e.outcome.padEnd(8)}  ${status.region}${e.commit ? `  ${e.commit.subject} (${e.commit.author}, ${e.commit.date})` : ''}\n`);
        for (const line of e.errors.slice(0, 5)) process.stdout.write(`    ${line}\n`);
      }
    });
}

interface HistoryRow {
  revision: string;
  state: string;
  firstSeenAt: string | null;
  regions: { region: string; outcome: 'applied' | 'refused' | 'halted' | 'not applied'; detail?: string }[];
  commit?: { subject: string; author: string; date: string } | null;
}

function historyRow(view: RevisionView): HistoryRow {
  return {
    revision: view.revision,
    state: view.superseded ? `${view.state} (superseded)` : view.state,
    firstSeenAt: view.firstSeenAt !== undefined ? new Date(view.firstSeenAt).toISOString().replace(/\.\d{3}Z$/, 'Z') : null,
    regions: view.regions.map((r) => {
      const halt = view.halted.find((h) => h.region === r.region);
      if (halt) return { region: r.region, outcome: 'halted' as const, detail: `${halt.deployment} ${halt.version}: ${halt.reason}` };
      if (r.refused) return { region: r.region, outcome: 'refused' as const, detail: (r.errors ?? [])[0] };
      return { region: r.region, outcome: r.applied ? ('applied' as const) : ('not applied' as const) };
    }),
  };
}

function renderRow(row: HistoryRow): string {
  const head = `${row.revision.slice(0, 8)}  ${row.state.padEnd(11)}  ${row.firstSeenAt ?? '-'}${row.commit ? `  ${row.commit.subject} (${row.commit.author})` : ''}`;
  const regions = row.regions.map((r) => `    ${r.region}: ${r.outcome}${r.detail ? ` (${r.detail})` : ''}`);
  return [head, ...regions].join('\n');
}

/** Subjects, authors and dates of commits, read from a local clone; null for a commit it lacks. */
function commitReader(dir: string): (sha: string) => Promise<{ subject: string; author: string; date: string } | null> {
  const gitdir = fs.existsSync(join(dir, '.git')) ? join(dir, '.git') : dir;
  if (!fs.existsSync(join(gitdir, 'objects'))) throw new CascadeError('not-a-git-repo', `--repo ${dir} is not a git repository; give a clone of the fleet repository`);
  return async (sha) => {
    try {
      // Loaded on use: isomorphic-git is the largest module the CLI has.
      const { default: git } = await import('isomorphic-git');
      const { commit } = await git.readCommit({ fs, gitdir, oid: sha });
      return {
        subject: commit.message.split('\n')[0]!,
        author: commit.author.name,
        date: new Date(commit.author.timestamp * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      };
    } catch {
      return null;
    }
  };
}
