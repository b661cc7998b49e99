import { Option, type Command } from 'commander';

/**
 * `cascade region backup --data DIR --to FILE`: a consistent copy of a region's state database with
 * SQLite's online backup, safe while the region runs. To restore: stop the region, move
 * DIR/state.sqlite (and -wal, -shm) away, copy FILE to DIR/state.sqlite, start the region.
 */
export function registerRegionBackup(region: Command): void {
  region
    .command('backup')
    .description("copy the state database of the region in --data consistently (SQLite online backup; safe while the region runs)")
    .addOption(new Option('--to <file>', 'where to write the copy (one SQLite file)').makeOptionMandatory())
    // --data is `cascade region`'s own option (commander gives it to the parent command).
    .action(async (_options: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ data: string; to: string }>();
      const [{ backupStateFile }, { STATE_FILE_NAME }] = await Promise.all([import('../../storage/open-state-database.js'), import('../../storage/region-state-store.js')]);
      const { pages } = await backupStateFile({ dataDir: flags.data, fileName: STATE_FILE_NAME, owner: 'region', toFile: flags.to });
      process.stdout.write(`backed up ${flags.data}/${STATE_FILE_NAME} to ${flags.to} (${pages} pages); restore by stopping the region and copying it to ${flags.data}/${STATE_FILE_NAME}\n`);
    });
}
