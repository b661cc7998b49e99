import { Command, Option } from 'commander';
import { operatorRequest } from '../operator-request.js';
import { urlFlag } from '../parse-flags.js';

interface DevicesFlags {
  regionUrl: string;
  operatorToken?: string;
  json?: boolean;
}

interface AdminDevice {
  id: string;
  labels: Record<string, string>;
  enrolledAt: number;
  lastSeen: number | null;
  revoked: boolean;
}

export function registerDevices(program: Command): void {
  const devices = program.command('devices').description("list a region's enrolled devices, revoke one");
  const common = (command: Command) =>
    command
      .addOption(new Option('--region-url <url>', 'URL of the region').env('CASCADE_REGION_URL').argParser(urlFlag).makeOptionMandatory())
      .addOption(new Option('--operator-token <token>', "the region's operator token").env('CASCADE_OPERATOR_TOKEN'));
  common(devices.command('list').description('every enrolled device, its labels, enrolment and last contact').option('--json', 'print JSON')).action(
    async (flags: DevicesFlags) => {
      const list = (await operatorRequest(flags, 'GET', '/api/v1/admin/devices')) as AdminDevice[];
      if (flags.json) {
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      const when = (t: number | null) => (t === null ? 'never' : new Date(t).toISOString().replace('.000Z', 'Z'));
      for (const d of list) {
        const labels = Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-';
        process.stdout.write(`${d.id}\t${d.revoked ? 'REVOKED' : 'active'}\tenrolled ${when(d.enrolledAt)}\tlast seen ${when(d.lastSeen)}\t${labels}\n`);
      }
      process.stdout.write(`${list.length} device(s), ${list.filter((d) => d.revoked).length} revoked\n`);
    },
  );
  common(devices.command('revoke').description("revoke a device's token: refused at once, cannot enrol again under that id").argument('<id>', 'device id')).action(
    async (id: string, flags: DevicesFlags) => {
      await operatorRequest(flags, 'POST', `/api/v1/admin/devices/${encodeURIComponent(id)}/revoke`);
      process.stdout.write(`revoked ${id}\n`);
    },
  );
}
