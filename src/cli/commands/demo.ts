import { Command, InvalidArgumentError, Option } from 'commander';

interface DemoFlags {
  devices: number;
  keep?: boolean;
  verbose?: boolean;
}

const MAX_DEVICES = 1000;

function devicesFlag(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_DEVICES) throw new InvalidArgumentError(`"${value}" must be a whole number from 1 to ${MAX_DEVICES}.`);
  return n;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('a throwaway fleet repository on a local git host, a region and simulated devices: a rollout, a git revert, a refused bad commit (about a minute)')
    .addOption(new Option('--devices <n>', 'number of simulated devices').default(50).argParser(devicesFlag))
    .option('--keep', 'keep the temporary folder (fleet repository, git host copy, region data) and print where it is')
    .option('--verbose', "show the region's and devices' logs on standard error")
    .action(async (flags: DemoFlags) => {
      const [{ runDemo }, { createCliLogger }] = await Promise.all([import('../../demo/run-demo.js'), import('../logger.js')]);
      // Ctrl-C stops the demo cleanly: devices, region and git host are shut down and the temp folder removed.
      const interrupt = new AbortController();
      const onSignal = () => interrupt.abort(new Error('interrupted'));
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        await runDemo({
          devices: flags.devices,
          keep: flags.keep ?? false,
          verbose: flags.verbose ?? false,
          out: { write: (text) => process.stdout.write(text), isTTY: process.stdout.isTTY === true, columns: process.stdout.columns },
          signal: interrupt.signal,
          log: flags.verbose ? createCliLogger('info') : undefined,
        });
      } catch (err) {
        if (!interrupt.signal.aborted) throw err;
        process.stderr.write('cascade demo: interrupted; everything it started is stopped\n');
        process.exitCode = 130;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
