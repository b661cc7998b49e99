import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { startRegion } from '../../region/region-server.js';
import { createCliLogger } from '../logger.js';
import { durationFlag, listenFlag } from '../parse-flags.js';

interface RegionFlags {
  repo: string;
  branch: string;
  region: string;
  listen: { host: string; port: number };
  data: string;
  interval: number;
  offlineAfter: number;
  enrollmentToken?: string;
  insecureOpenEnrollment?: boolean;
  gitUsername?: string;
  gitPassword?: string;
  gitToken?: string;
}

export function registerRegion(program: Command): void {
  program
    .command('region')
    .description('run a regional reconciler: pull the fleet repository, hand out updates, serve devices')
    .addOption(new Option('--repo <url|path>', 'fleet repository: http(s) URL or local path').env('CASCADE_REPO').makeOptionMandatory())
    .addOption(new Option('--branch <name>', 'branch to follow').env('CASCADE_BRANCH').default('main'))
    .addOption(new Option('--region <name>', 'region this reconciler serves').env('CASCADE_REGION').makeOptionMandatory())
    .addOption(new Option('--listen <host:port>', 'address of the device and operator API').env('CASCADE_LISTEN').default(listenFlag('0.0.0.0:8080'), '0.0.0.0:8080').argParser(listenFlag))
    .addOption(new Option('--data <dir>', 'state directory (SQLite, git objects, parse cache)').env('CASCADE_DATA').default('/var/lib/cascade'))
    .addOption(new Option('--interval <duration>', 'poll the repository this often').env('CASCADE_INTERVAL').default(30_000, '30s').argParser(durationFlag))
    .addOption(new Option('--offline-after <duration>', 'a device silent this long counts as offline').env('CASCADE_OFFLINE_AFTER').default(600_000, '10m').argParser(durationFlag))
    .addOption(new Option('--enrollment-token <token>', 'secret devices present to enrol').env('CASCADE_ENROLLMENT_TOKEN'))
    .addOption(new Option('--insecure-open-enrollment', 'let any device enrol without a token (lab use only)').env('CASCADE_INSECURE_OPEN_ENROLLMENT'))
    .addOption(new Option('--git-username <name>', 'basic auth user for an http(s) repository').env('CASCADE_GIT_USERNAME'))
    .addOption(new Option('--git-password <password>', 'basic auth password for an http(s) repository').env('CASCADE_GIT_PASSWORD'))
    .addOption(new Option('--git-token <token>', 'access token for an http(s) repository').env('CASCADE_GIT_TOKEN'))
    .action(async (flags: RegionFlags) => {
      if (!flags.enrollmentToken && !flags.insecureOpenEnrollment) {
        throw new CascadeError(
          'enrollment-token-required',
          'refusing to start without an enrolment token: set --enrollment-token (or CASCADE_ENROLLMENT_TOKEN), or pass --insecure-open-enrollment to let any device enrol.',
        );
      }
      const log = createCliLogger();
      if (!flags.enrollmentToken) log.warn('open enrolment: any device that can reach this region can enrol (--insecure-open-enrollment)');
      const region = await startRegion({
        repo: flags.repo,
        branch: flags.branch,
        region: flags.region,
        host: flags.listen.host,
        port: flags.listen.port,
        dataDir: flags.data,
        intervalMs: flags.interval,
        offlineAfterMs: flags.offlineAfter,
        enrollmentToken: flags.enrollmentToken ?? null,
        gitAuth: { username: flags.gitUsername, password: flags.gitPassword, token: flags.gitToken },
        log,
      });
      await new Promise<void>((resolve) => {
        const stop = () => {
          log.info('shutting down');
          void region.close().then(resolve);
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
}
