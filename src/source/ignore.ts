import ignoreModule from 'ignore';

/** The file at the repository root whose gitignore-style patterns leave files out of the fleet. */
export const IGNORE_FILE = '.cascadeignore';

// `ignore` ships CommonJS; under NodeNext the default import may be the module object.
type CreateIgnore = typeof ignoreModule.default;
const createIgnore = ((ignoreModule as unknown as { default?: CreateIgnore }).default ?? ignoreModule) as CreateIgnore;

/** Which paths of a repository are fleet files. Paths are POSIX and relative to the root. */
export interface FleetPathFilter {
  /** Should the walk go into this directory at all? */
  includesDir(path: string): boolean;
  /** Is this file (in an included directory) a fleet file? */
  includesFile(path: string): boolean;
}

/**
 * Fleet files are `*.yaml`/`*.yml` files, except hidden files and folders (any segment starting
 * with "."), `node_modules`, and what the root .cascadeignore excludes (gitignore syntax).
 */
export function fleetPathFilter(ignoreText: string | null): FleetPathFilter {
  const rules = ignoreText ? createIgnore().add(ignoreText) : null;
  return {
    includesDir(path) {
      const name = path.slice(path.lastIndexOf('/') + 1);
      if (isSkippedName(name)) return false;
      return !rules?.ignores(`${path}/`);
    },
    includesFile(path) {
      const name = path.slice(path.lastIndexOf('/') + 1);
      if (isSkippedName(name) || !isYamlName(name)) return false;
      return !rules?.ignores(path);
    },
  };
}

export function isYamlName(name: string): boolean {
  return /\.ya?ml$/i.test(name);
}

function isSkippedName(name: string): boolean {
  return name.startsWith('.') || name === 'node_modules';
}
