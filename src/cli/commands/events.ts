import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { followEvents, formatEventLine, recentEvents, type EventsSource } from '../events/follow-events.js';
import { secretFrom } from '../secrets.js';
import { urlFlag } from '../parse-flags.js';
import type { CascadeEvent } from '../../protocol/events.js';

interface EventsFlags {
  regionUrl?: string;
  hubUrl?: string;
  operatorToken?: string;
  hubToken?: string;
  follow?: boolean;
  json?: boolean;
}

export function registerEvents(program: Command): void {
  program
    .command('events')
    .description('show what a region or the hub reports: revisions applied or refused, waves, bakes, halts, failed devices (--follow: live)')
    .addOption(new Option('--region-url <url>', 'URL of a running region').env('CASCADE_REGION_URL').argParser(urlFlag))
    .addOption(new Option('--hub-url <url>', 'URL of the hub: events of every region').env('CASCADE_HUB_URL').argParser(urlFlag))
    .addOption(new Option('--operator-token <token>', "the region's operator token: device events need it when the region has one").env('CASCADE_OPERATOR_TOKEN'))
    .addOption(new Option('--hub-token <token>', "the hub's read token, when it requires one").env('CASCADE_HUB_READ_TOKEN'))
    .option('-f, --follow', 'keep printing events as they happen (reconnects by itself; Ctrl-C ends)')
    .option('--json', 'one JSON object per line')
    .action(async (flags: EventsFlags) => {
      let source: EventsSource;
      if (flags.regionUrl) source = { url: flags.regionUrl, token: secretFrom(flags.operatorToken, 'CASCADE_OPERATOR_TOKEN'), flag: '--region-url' };
      else if (flags.hubUrl) source = { url: flags.hubUrl, token: secretFrom(flags.hubToken, 'CASCADE_HUB_READ_TOKEN'), flag: '--hub-url' };
      else throw new CascadeError('events-url-required', 'events: say what to ask: --region-url URL (one region) or --hub-url URL (every region), or use a context (`cascade context add`)');
      const print = (event: CascadeEvent) => process.stdout.write(`${flags.json ? JSON.stringify(event) : formatEventLine(event)}\n`);
      if (!flags.follow) {
        for (const event of await recentEvents(source)) print(event);
        return;
      }
      const abort = new AbortController();
      const stop = () => abort.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        await followEvents(source, {
          onEvent: print,
          onGap: () => process.stderr.write('cascade: some events were missed (the server restarted or its buffer moved on)\n'),
          onReconnect: (delay, reason) => process.stderr.write(`cascade: event stream lost (${reason}); reconnecting in ${Math.round(delay / 1000)} s\n`),
          signal: abort.signal,
        });
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}
