import { Command, InvalidArgumentError, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { DEFAULT_OFFLINE_AFTER_MS } from '../../plan/rollout/defaults.js';
import { registerRegionAccept } from './region-accept.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_BACKUPS_KEPT, DEFAULT_MAINTENANCE_SCHEDULE } from '../../region/maintenance-defaults.js';
import { envFlag, secretFrom } from '../secrets.js';
import { allowArtifactOriginOption, allowHttpArtifactsOption, artifactPolicyFrom, durationFlag, fractionFlag, listenFlag, positiveIntFlag, urlFlag, byteSizeFlag, shareFlag } from '../parse-flags.js';
import { checkLocalRepo, checkStateDir, listenError } from '../preflight.js';
import { registerRegionBackup } from './region-backup.js';
import { ENROLLMENT_POLICIES, type EnrollmentPolicy } from '../../region/enrollment-policy.js';

interface RegionFlags {
  repo: string;
  branch: string;
  region: string;
  listen: { host: string; port: number };
  data: string;
  interval: number;
  offlineAfter: number;
  resyncInterval: number;
  enrollmentToken?: string;
  insecureOpenEnrollment?: boolean;
  gitUsername?: string;
  gitPassword?: string;
  gitToken?: string;
  hubUrl?: string;
  hubToken?: string;
  tlsCert?: string;
  tlsKey?: string;
  operatorToken?: string;
  verifyCommits?: boolean;
  trustedKeys?: string;
  allowNonFastForward?: boolean;
  mqttUrl?: string;
  mqttUsername?: string;
  mqttPassword?: string;
  mqttCaFile?: string;
  mqttDevicePasswords?: string;
  mqttBrokerPidFile?: string;
  maintenanceSchedule: string;
  backupDir?: string;
  backupKeep: number;
  allowArtifactOrigin?: string[];
  allowHttpArtifacts?: boolean;
  registryMirror?: string;
  enrollmentPolicy: EnrollmentPolicy;
  initState?: boolean;
  maxRemoval: number;
  gitTimeout: number;
  artifactRelay: boolean;
  artifactCacheSize: number;
  artifactCredentials?: string;
  relayRate?: number;
  relayConcurrency: number;
  deltaMaxShare: number;
  gitPushToken?: string;
  gitPushUsername?: string;
  signingKey?: string;
}

/** A registry host as image references name it: host[:port] with an optional path prefix, no scheme. */
function registryMirrorFlag(value: string): string {
  const text = value.replace(/^https?:\/\//, '').replace(/\/+$/, '');
  if (!/^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]{1,5})?(\/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$/.test(text)) {
    throw new InvalidArgumentError(`"${value}" is not a registry host such as mirror.site.local:5000 or mirror.local/hub`);
  }
  return text;
}

export function registerRegion(program: Command): void {
  const region = program
    .command('region')
    .description('run a regional reconciler: pull the fleet repository, hand out updates, serve devices')
    .addOption(new Option('--repo <url|path>', 'fleet repository: http(s) URL or local path (required)').env('CASCADE_REPO'))
    .addOption(new Option('--branch <name>', 'branch to follow').env('CASCADE_BRANCH').default('main'))
    .addOption(new Option('--region <name>', 'region this reconciler serves (required)').env('CASCADE_REGION'))
    .addOption(new Option('--listen <host:port>', 'address of the device and operator API').env('CASCADE_LISTEN').default(listenFlag('0.0.0.0:8080'), '0.0.0.0:8080').argParser(listenFlag))
    .addOption(new Option('--data <dir>', 'state directory (SQLite, git objects, parse cache)').env('CASCADE_DATA').default('/var/lib/cascade'))
    .addOption(new Option('--interval <duration>', 'poll the repository this often').env('CASCADE_INTERVAL').default(30_000, '30s').argParser(durationFlag))
    .addOption(
      new Option('--resync-interval <duration>', 'check the in-memory state against a full recount from the store this often (errors name any difference)')
        .env('CASCADE_RESYNC_INTERVAL')
        .default(600_000, '10m')
        .argParser(durationFlag),
    )
    .addOption(new Option('--offline-after <duration>', 'a device silent this long counts as offline, for rollouts and status alike (the fleet repository\'s Region or Fleet rollout.offlineAfter wins)').env('CASCADE_OFFLINE_AFTER').default(DEFAULT_OFFLINE_AFTER_MS, '10m').argParser(durationFlag))
    .addOption(new Option('--enrollment-token <token>', 'secret devices present to enrol').env('CASCADE_ENROLLMENT_TOKEN'))
    .addOption(new Option('--enrollment-policy <policy>', 'new devices enrol at once (auto) or wait for `cascade devices approve ID` (approve)').choices(ENROLLMENT_POLICIES).env('CASCADE_ENROLLMENT_POLICY').default('auto'))
    .addOption(
      new Option('--max-removal <share>', 'refuse a revision that removes apps from more than this share of the region\'s devices, or deletes its Region document, unless its head commit has the trailer "Cascade-Allow-Removal: yes"')
        .env('CASCADE_MAX_REMOVAL')
        .default(0.1, '10%')
        .argParser(fractionFlag),
    )
    .addOption(new Option('--init-state', 'start with an empty state although --data held one before (its database is missing or empty); without it the region refuses'))
    .addOption(new Option('--insecure-open-enrollment', 'let any device enrol without a token (lab use only; env CASCADE_INSECURE_OPEN_ENROLLMENT=true)'))
    .addOption(new Option('--git-timeout <duration>', 'give up on any one request to the git host that has not completed after this long, however slowly it trickles (the pass reports it and the next one tries again)').env('CASCADE_GIT_TIMEOUT').default(60_000, '60s').argParser(durationFlag))
    .addOption(new Option('--git-username <name>', 'basic auth user for an http(s) repository').env('CASCADE_GIT_USERNAME'))
    .addOption(new Option('--git-password <password>', 'basic auth password for an http(s) repository').env('CASCADE_GIT_PASSWORD'))
    .addOption(new Option('--git-token <token>', 'access token for an http(s) repository').env('CASCADE_GIT_TOKEN'))
    .addOption(new Option('--hub-url <url>', 'push a summary to this hub (`cascade hub`) on every change and heartbeat').env('CASCADE_HUB_URL').argParser(urlFlag))
    .addOption(new Option('--hub-token <token>', "this region's hub token, from `cascade hub region-token REGION`").env('CASCADE_HUB_TOKEN'))
    .addOption(new Option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)').env('CASCADE_TLS_CERT'))
    .addOption(new Option('--tls-key <file>', 'private key of --tls-cert (PEM)').env('CASCADE_TLS_KEY'))
    .addOption(new Option('--operator-token <token>', 'bearer token for the operator API (device list and revocation, live inventory)').env('CASCADE_OPERATOR_TOKEN'))
    .addOption(new Option('--verify-commits', 'apply only revisions whose head commit is signed by a trusted key (env CASCADE_VERIFY_COMMITS=true)'))
    .addOption(new Option('--trusted-keys <file>', 'OpenPGP public keys and/or SSH allowed-signers lines trusted to sign commits').env('CASCADE_TRUSTED_KEYS'))
    .addOption(new Option('--allow-non-fast-forward', 'accept a branch moved to a commit that does not descend from the served one (env CASCADE_ALLOW_NON_FAST_FORWARD=true)'))
    .addOption(new Option('--mqtt-url <url>', 'also serve devices over MQTT through this broker, e.g. mqtts://broker:8883 (docs/mqtt.md)').env('CASCADE_MQTT_URL'))
    .addOption(new Option('--mqtt-username <name>', 'the region\'s MQTT user').env('CASCADE_MQTT_USERNAME'))
    .addOption(new Option('--mqtt-password <password>', 'the region\'s MQTT password').env('CASCADE_MQTT_PASSWORD'))
    .addOption(new Option('--mqtt-ca-file <file>', 'with mqtts://: PEM file of the CA that signed the broker\'s certificate').env('CASCADE_MQTT_CA_FILE'))
    .addOption(new Option('--mqtt-device-passwords <file>', 'Mosquitto password file in which the region writes each device\'s credentials (username = device id, password = device token)').env('CASCADE_MQTT_DEVICE_PASSWORDS'))
    .addOption(new Option('--registry-mirror <host[:port][/path]>', 'devices pull container images through this registry mirror (a Region\'s spec.containers.registryMirror wins)').env('CASCADE_REGISTRY_MIRROR').argParser(registryMirrorFlag))
    .addOption(new Option('--mqtt-broker-pid-file <file>', 'pid file of the broker, sent SIGHUP after each change to --mqtt-device-passwords (several, comma-separated, for brokers sharing the file)').env('CASCADE_MQTT_BROKER_PID_FILE'))
    .addOption(new Option('--maintenance-schedule <cron>', 'housekeeping (pack compaction, PRAGMA optimize, state backup, report pruning) on this cron schedule').env('CASCADE_MAINTENANCE_SCHEDULE').default(DEFAULT_MAINTENANCE_SCHEDULE, 'nightly at 03:17'))
    .addOption(new Option('--backup-dir <dir>', 'where housekeeping writes state backups (default: <data>/backups)').env('CASCADE_BACKUP_DIR'))
    .addOption(new Option('--backup-keep <n>', 'state backups kept').env('CASCADE_BACKUP_KEEP').default(DEFAULT_BACKUPS_KEPT).argParser(positiveIntFlag))
    .addOption(allowArtifactOriginOption())
    .addOption(allowHttpArtifactsOption())
    .addOption(new Option('--no-artifact-relay', 'devices download artifacts from their origin URLs instead of from this region (env CASCADE_ARTIFACT_RELAY=false)'))
    .addOption(new Option('--artifact-cache-size <bytes>', 'disk the relayed artifacts may take under --data, e.g. 20GiB (what running rollouts need is kept anyway)').env('CASCADE_ARTIFACT_CACHE_SIZE').default(10 * 1024 ** 3, '10GiB').argParser(byteSizeFlag))
    .addOption(new Option('--artifact-credentials <file>', 'JSON file of credentials for artifact origins: {"origins":[{"prefix":"https://host/path/","bearer":"..."}]}; devices never see them').env('CASCADE_ARTIFACT_CREDENTIALS'))
    .addOption(new Option('--relay-rate <bytes-per-second>', 'limit of artifact bytes sent to all devices together, e.g. 5MB/s (default: no limit)').env('CASCADE_RELAY_RATE').argParser(byteSizeFlag))
    .addOption(new Option('--relay-concurrency <n>', 'artifact downloads served at once; the others wait their turn').env('CASCADE_RELAY_CONCURRENCY').default(32).argParser(positiveIntFlag))
    .addOption(new Option('--delta-max-share <share>', 'offer a binary delta when it is at most this share of the full artifact').env('CASCADE_DELTA_MAX_SHARE').default(0.5, '50%').argParser(shareFlag))
    .addOption(new Option('--git-push-token <token>', 'write credential for spec.rollout.onHalt: revert | revert-branch (http(s) remotes only; SSH is not supported)').env('CASCADE_GIT_PUSH_TOKEN'))
    .addOption(new Option('--git-push-username <name>', 'user name sent with --git-push-token where the host wants one (GitLab oauth2, Bitbucket x-token-auth)').env('CASCADE_GIT_PUSH_USERNAME'))
    .addOption(new Option('--signing-key <file>', "the region's armored OpenPGP private key: it signs the reverts it pushes, so regions with --verify-commits apply them (passphrase: CASCADE_SIGNING_KEY_PASSPHRASE)").env('CASCADE_SIGNING_KEY'))
    .action(async (flags: RegionFlags) => {
      // Checked here rather than by commander, which would also ask them of `cascade region accept` and `backup`.
      for (const [flag, value] of [['--repo <url|path>', flags.repo], ['--region <name>', flags.region]] as const) {
        if (!value) throw new CascadeError('flag-required', `required option '${flag}' not specified`);
      }
      const [{ startRegion }, { regionDashboard }, { createCliLogger }, { checkMaintenanceSchedule }] = await Promise.all([
        import('../../region/compose.js'),
        import('../../dashboard/serve.js'),
        import('../logger.js'),
        import('../../region/maintenance.js'),
      ]);
      checkMaintenanceSchedule(flags.maintenanceSchedule);
      flags.enrollmentToken = secretFrom(flags.enrollmentToken, 'CASCADE_ENROLLMENT_TOKEN');
      flags.gitToken = secretFrom(flags.gitToken, 'CASCADE_GIT_TOKEN');
      flags.hubToken = secretFrom(flags.hubToken, 'CASCADE_HUB_TOKEN');
      flags.gitPassword = secretFrom(flags.gitPassword, 'CASCADE_GIT_PASSWORD');
      flags.operatorToken = secretFrom(flags.operatorToken, 'CASCADE_OPERATOR_TOKEN');
      flags.mqttPassword = secretFrom(flags.mqttPassword, 'CASCADE_MQTT_PASSWORD');
      flags.insecureOpenEnrollment ||= envFlag('CASCADE_INSECURE_OPEN_ENROLLMENT');
      flags.verifyCommits ||= envFlag('CASCADE_VERIFY_COMMITS');
      flags.allowNonFastForward ||= envFlag('CASCADE_ALLOW_NON_FAST_FORWARD');
      if (flags.verifyCommits && !flags.trustedKeys) {
        throw new CascadeError('trusted-keys-required', '--verify-commits needs --trusted-keys FILE (OpenPGP public keys or SSH allowed-signers lines).');
      }
      if (!flags.mqttUrl && (flags.mqttUsername || flags.mqttPassword || flags.mqttCaFile || flags.mqttDevicePasswords || flags.mqttBrokerPidFile)) {
        throw new CascadeError('mqtt-url-required', 'the --mqtt-* flags need --mqtt-url (e.g. --mqtt-url mqtts://broker:8883).');
      }
      if (flags.mqttBrokerPidFile && !flags.mqttDevicePasswords) {
        throw new CascadeError('mqtt-device-passwords-required', '--mqtt-broker-pid-file only makes sense with --mqtt-device-passwords (the broker is signalled after each change to it).');
      }
      if (Boolean(flags.tlsCert) !== Boolean(flags.tlsKey)) {
        throw new CascadeError('tls-incomplete', 'HTTPS needs both --tls-cert and --tls-key.');
      }
      if (!flags.enrollmentToken && !flags.insecureOpenEnrollment) {
        throw new CascadeError(
          'enrollment-token-required',
          'refusing to start without an enrolment token: set --enrollment-token (or CASCADE_ENROLLMENT_TOKEN), or pass --insecure-open-enrollment to let any device enrol.',
        );
      }
      const trustedKeys = flags.verifyCommits ? await (await import('../../source/trusted-keys.js')).loadTrustedKeys(flags.trustedKeys!) : undefined;
      flags.gitPushToken = secretFrom(flags.gitPushToken, 'CASCADE_GIT_PUSH_TOKEN');
      const signer = flags.signingKey
        ? await (await import('../../source/sign-commit.js')).openPgpSigner(readSecretFile(flags.signingKey, '--signing-key'), secretFrom(undefined, 'CASCADE_SIGNING_KEY_PASSPHRASE'))
        : undefined;
      const tls = flags.tlsCert ? { cert: readPem(flags.tlsCert, '--tls-cert'), key: readPem(flags.tlsKey!, '--tls-key') } : undefined;
      if (flags.hubUrl && !flags.hubToken) {
        throw new CascadeError('hub-token-required', `--hub-url needs --hub-token (or CASCADE_HUB_TOKEN): print it with \`cascade hub region-token ${flags.region}\` on the hub.`);
      }
      // Nothing is created on disk until the flags and the state folder are known to be usable.
      checkLocalRepo(flags.repo);
      checkStateDir(flags.data, '--data', 'CASCADE_DATA');
      const log = createCliLogger();
      if (!flags.operatorToken) log.warn('no --operator-token: the operator API (device list, revocation) and the live inventory are open to anyone who can reach this region');
      if (!flags.enrollmentToken) log.warn('open enrolment: any device that can reach this region can enrol (--insecure-open-enrollment)');
      const region = await startRegion({
        plugins: [regionDashboard],
        repo: flags.repo,
        branch: flags.branch,
        region: flags.region,
        host: flags.listen.host,
        port: flags.listen.port,
        dataDir: flags.data,
        intervalMs: flags.interval,
        offlineAfterMs: flags.offlineAfter,
        maintenance: { schedule: flags.maintenanceSchedule, backupDir: flags.backupDir ?? join(flags.data, 'backups'), backupsKept: flags.backupKeep },
        resyncIntervalMs: flags.resyncInterval,
        enrollmentToken: flags.enrollmentToken ?? null,
        enrollmentPolicy: flags.enrollmentPolicy,
        initState: flags.initState,
        maxRemoval: flags.maxRemoval,
        gitTimeoutMs: flags.gitTimeout,
        gitAuth: { username: flags.gitUsername, password: flags.gitPassword, token: flags.gitToken },
        hub: flags.hubUrl ? { url: flags.hubUrl, token: flags.hubToken! } : undefined,
        tls,
        operatorToken: flags.operatorToken ?? null,
        guard: { trustedKeys, allowNonFastForward: flags.allowNonFastForward },
        artifactPolicy: artifactPolicyFrom(flags),
        // On by default: the region always has --data; --no-artifact-relay or CASCADE_ARTIFACT_RELAY=false turn it off.
        artifactRelay:
          flags.artifactRelay && !['0', 'false', 'no', 'off'].includes((process.env['CASCADE_ARTIFACT_RELAY'] ?? '').trim().toLowerCase())
            ? { cacheBytes: flags.artifactCacheSize, credentialsFile: flags.artifactCredentials, rate: flags.relayRate, concurrency: flags.relayConcurrency, deltaShare: flags.deltaMaxShare }
            : undefined,
        mqtt: flags.mqttUrl
          ? {
              url: flags.mqttUrl,
              username: flags.mqttUsername,
              password: flags.mqttPassword,
              caFile: flags.mqttCaFile,
              passwordFile: flags.mqttDevicePasswords,
              brokerPidFile: flags.mqttBrokerPidFile,
            }
          : undefined,
        haltRevert: { pushToken: flags.gitPushToken, pushUsername: flags.gitPushUsername, signer },
        registryMirror: flags.registryMirror,
        settleMemory: true,
        log,
      }).catch((err: unknown) => {
        throw listenError(err, flags.listen, '--listen');
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
  registerRegionAccept(region);
  registerRegionBackup(region);
}

function readSecretFile(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CascadeError('signing-key-unreadable', `cannot read ${flag} ${file}: ${(err as Error).message}`);
  }
}

function readPem(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new CascadeError('tls-file-unreadable', `cannot read ${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; check the path and that this user may read it`);
  }
}
