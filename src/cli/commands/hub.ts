import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { regionToken } from '../../protocol/hub-auth.js';
import { DEFAULT_STALE_AFTER_MS, isValidRegionName } from '../../protocol/hub-summary.js';
import { secretFrom } from '../secrets.js';
import { durationFlag, listenFlag } from '../parse-flags.js';
import { checkStateDir, listenError } from '../preflight.js';

interface HubFlags {
  listen: { host: string; port: number };
  data: string;
  token?: string;
  readToken?: string;
  webhook: string[];
  webhookSecret?: string;
  staleAfter: number;
}

const collect = (value: string, previous: string[]) => [...previous, value];

function requireToken(token: string | undefined): string {
  if (!token) {
    throw new CascadeError('hub-token-required', 'the hub needs its secret: set --token (or CASCADE_HUB_TOKEN), e.g. from `openssl rand -base64 32`');
  }
  return token;
}

export function registerHub(program: Command): void {
  const hub = program
    .command('hub')
    .description('run the cloud view: regions push summaries, operators read the fleet, a web dashboard, webhooks')
    .addOption(new Option('--listen <host:port>', 'address of the hub API and dashboard').env('CASCADE_HUB_LISTEN').default(listenFlag('0.0.0.0:8090'), '0.0.0.0:8090').argParser(listenFlag))
    .addOption(new Option('--data <dir>', 'state directory (SQLite)').env('CASCADE_HUB_DATA').default('/var/lib/cascade-hub'))
    .addOption(new Option('--token <secret>', "the hub's secret; each region's token derives from it (see `cascade hub region-token`)").env('CASCADE_HUB_TOKEN'))
    .addOption(new Option('--read-token <token>', 'require this token (or --token) to read the API and dashboard; open reads when unset').env('CASCADE_HUB_READ_TOKEN'))
    .option('--webhook <url>', "POST a JSON event here on each change of a commit's overall state (repeatable)", collect, [] as string[])
    .addOption(new Option('--webhook-secret <secret>', 'sign webhook bodies: X-Cascade-Signature: sha256=<HMAC>').env('CASCADE_HUB_WEBHOOK_SECRET'))
    .addOption(
      new Option('--stale-after <duration>', 'a region silent this long is marked stale')
        .env('CASCADE_HUB_STALE_AFTER')
        .default(DEFAULT_STALE_AFTER_MS, '60s')
        .argParser(durationFlag),
    )
    .action(async (flags: HubFlags) => {
      const [{ startHub }, { hubDashboard }, { createCliLogger }] = await Promise.all([
        import('../../hub/hub-server.js'),
        import('../../dashboard/serve.js'),
        import('../logger.js'),
      ]);
      // Each secret may also come from a file: CASCADE_HUB_TOKEN_FILE, CASCADE_HUB_READ_TOKEN_FILE, ...
      flags.token = secretFrom(flags.token, 'CASCADE_HUB_TOKEN');
      flags.readToken = secretFrom(flags.readToken, 'CASCADE_HUB_READ_TOKEN');
      flags.webhookSecret = secretFrom(flags.webhookSecret, 'CASCADE_HUB_WEBHOOK_SECRET');
      const token = requireToken(flags.token);
      checkStateDir(flags.data, '--data', 'CASCADE_HUB_DATA');
      const log = createCliLogger();
      const running = await startHub({
        plugins: [hubDashboard],
        host: flags.listen.host,
        port: flags.listen.port,
        dataDir: flags.data,
        token,
        readToken: flags.readToken ?? null,
        webhooks: flags.webhook,
        webhookSecret: flags.webhookSecret ?? null,
        staleAfterMs: flags.staleAfter,
        log,
      }).catch((err: unknown) => {
        throw listenError(err, flags.listen, '--listen');
      });
      if (!flags.readToken) log.warn('reads are open: anyone who reaches the listen address sees the fleet (set --read-token to require a token)');
      await new Promise<void>((resolve) => {
        const stop = () => {
          log.info('shutting down');
          void running.close().then(resolve);
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });

  hub
    .command('region-token')
    .alias('token')
    .argument('<region>', 'name of the region')
    .description("print the token a region pushes with (--hub-token of `cascade region`), derived from the hub's secret")
    .addOption(new Option('--token <secret>', "the hub's secret").env('CASCADE_HUB_TOKEN'))
    .action((region: string, flags: { token?: string }, command: Command) => {
      if (!isValidRegionName(region)) {
        throw new CascadeError('region-name-invalid', `region name '${region}' is invalid: use 1-63 letters, digits or '._-', starting with a letter or digit`);
      }
      // `--token` after the subcommand may be taken by `hub` itself: accept it from either.
      const secret = secretFrom(flags.token ?? (command.parent?.opts() as { token?: string } | undefined)?.token, 'CASCADE_HUB_TOKEN');
      process.stdout.write(`${regionToken(requireToken(secret), region)}\n`);
    });
}
