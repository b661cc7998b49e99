import { Command, Option } from 'commander';
import { operatorRequest } from '../operator-request.js';
import { urlFlag } from '../parse-flags.js';

interface DevicesFlags {
  regionUrl: string;
  operatorToken?: string;
  json?: boolean;
  pending?: boolean;
}

interface PendingDevice {
  id: string;
  labels: Record<string, string>;
  key: string | null;
  requestedAt: number;
  lastAttemptAt: number;
}

interface AdminDevice {
  id: string;
  labels: Record<string, string>;
  enrolledAt: number;
  lastSeen: number | null;
  revoked: boolean;
  /** Fingerprint of the device key the id is bound to; null for an id enrolled without one. */
  key?: string | null;
}

export function registerDevices(program: Command): void {
  const devices = program.command('devices').description("list a region's enrolled and pending devices; approve, reset or revoke one");
  const common = (command: Command) =>
    command
      .addOption(new Option('--region-url <url>', 'URL of the region').env('CASCADE_REGION_URL').argParser(urlFlag).makeOptionMandatory())
      .addOption(new Option('--operator-token <token>', "the region's operator token").env('CASCADE_OPERATOR_TOKEN'));
  common(
    devices
      .command('list')
      .description('every enrolled device, its labels, enrolment and last contact; with --pending, the devices waiting for approval')
      .option('--json', 'print JSON')
      .option('--pending', 'list the devices waiting for `cascade devices approve` (--enrollment-policy approve), with their key fingerprints'),
  ).action(
    async (flags: DevicesFlags) => {
      const when = (t: number | null) => (t === null ? 'never' : new Date(t).toISOString().replace('.000Z', 'Z'));
      if (flags.pending) {
        const pending = (await operatorRequest(flags, 'GET', '/api/v1/admin/devices/pending')) as PendingDevice[];
        if (flags.json) {
          process.stdout.write(JSON.stringify(pending, null, 2) + '\n');
          return;
        }
        for (const d of pending) {
          const labels = Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-';
          process.stdout.write(`${d.id}\tPENDING\tkey ${d.key ?? 'none'}\tasked ${when(d.requestedAt)}\tlast asked ${when(d.lastAttemptAt)}\t${labels}\n`);
        }
        process.stdout.write(`${pending.length} device(s) waiting for approval\n`);
        return;
      }
      const list = (await operatorRequest(flags, 'GET', '/api/v1/admin/devices')) as AdminDevice[];
      if (flags.json) {
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      for (const d of list) {
        const labels = Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-';
        const key = d.key === undefined ? '' : `\tkey ${d.key ?? 'none'}`;
        process.stdout.write(`${d.id}\t${d.revoked ? 'REVOKED' : 'active'}\tenrolled ${when(d.enrolledAt)}\tlast seen ${when(d.lastSeen)}${key}\t${labels}\n`);
      }
      const keyless = list.filter((d) => d.key === null && !d.revoked).length;
      process.stdout.write(`${list.length} device(s), ${list.filter((d) => d.revoked).length} revoked${keyless ? `, ${keyless} not bound to a device key (agents before keys: any holder of the enrolment token can claim those ids)` : ''}\n`);
    },
  );
  common(devices.command('approve').description('let a device waiting for approval enrol, with the key it asked with').argument('<id>', 'device id')).action(
    async (id: string, flags: DevicesFlags) => {
      await operatorRequest(flags, 'POST', `/api/v1/admin/devices/${encodeURIComponent(id)}/approve`);
      process.stdout.write(`approved ${id}\n`);
    },
  );
  common(
    devices
      .command('reset')
      .description("release a device id from its key and end its token (the device was replaced or lost its key); the next enrolment binds a new key")
      .argument('<id>', 'device id'),
  ).action(async (id: string, flags: DevicesFlags) => {
    await operatorRequest(flags, 'POST', `/api/v1/admin/devices/${encodeURIComponent(id)}/reset`);
    process.stdout.write(`reset ${id}: the next enrolment with the enrolment token binds its key\n`);
  });
  common(devices.command('revoke').description("revoke a device's token: refused at once, cannot enrol again under that id").argument('<id>', 'device id')).action(
    async (id: string, flags: DevicesFlags) => {
      await operatorRequest(flags, 'POST', `/api/v1/admin/devices/${encodeURIComponent(id)}/revoke`);
      process.stdout.write(`revoked ${id}\n`);
    },
  );
}
