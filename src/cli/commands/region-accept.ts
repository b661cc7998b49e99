import { Option, type Command } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { operatorRequest } from '../operator-request.js';

interface AcceptFlags {
  regionUrl: string;
  operatorToken?: string;
}

/**
 * `cascade region accept REVISION`: after a branch was rewritten, the region refuses every head that
 * does not descend from what it serves (a force-push can roll devices back). An operator adopts one
 * such head, by its full commit id, without restarting the region with --allow-non-fast-forward.
 */
export function registerRegionAccept(region: Command): void {
  region
    .command('accept')
    .description('adopt one branch head that does not descend from the served revision (after a rewritten history)')
    .argument('<revision>', 'the full 40-hex commit id the branch now points to')
    .addOption(new Option('--region-url <url>', 'URL of the region').env('CASCADE_REGION_URL').makeOptionMandatory())
    .addOption(new Option('--operator-token <token>', "the region's operator token").env('CASCADE_OPERATOR_TOKEN'))
    .action(async (revision: string, flags: AcceptFlags) => {
      if (!/^[0-9a-f]{40}$/.test(revision)) {
        throw new CascadeError('revision-invalid', `"${revision}" is not a full commit id: give all 40 hex digits (git rev-parse origin/main), so only that exact head is adopted`);
      }
      const answer = (await operatorRequest(flags, 'POST', '/api/v1/revisions/accept', { revision })) as {
        applied: boolean;
        revision: { applied: string | null; attempted: string | null; error: string[] | null };
      };
      if (answer.applied) {
        process.stdout.write(`adopted ${revision.slice(0, 8)}: the region serves it now\n`);
        return;
      }
      const why = answer.revision.error?.[0] ?? `the branch head is ${answer.revision.attempted?.slice(0, 8) ?? 'unknown'}`;
      throw new CascadeError('accept-not-applied', `${revision.slice(0, 8)} was accepted but not applied: ${why}. It must be the branch's current head and pass validation (and signatures with --verify-commits).`);
    });
}
