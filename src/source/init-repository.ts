import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import git from 'isomorphic-git';
import { CascadeError } from '../core/errors.js';

/** The example fleet repository that `cascade init` copies; located next to the sources so `npx cascade` works from any cwd. */
const TEMPLATE_DIR = fileURLToPath(new URL('../../fleet-repo-template/', import.meta.url));
/** The project's JSON Schemas, copied into each new repository so its modelines resolve without network access. */
const SCHEMAS_DIR = fileURLToPath(new URL('../../schemas/', import.meta.url));
/** Where a new fleet repository keeps its copy of the schemas; hidden, so the loader never reads it as documents. */
const REPO_SCHEMAS_DIR = '.cascade/schemas';

const MODELINE = /^(#\s*yaml-language-server:\s*\$schema=)(\S+)[ \t]*$/gm;

export interface InitOptions {
  /** Name of the first branch; `main` when absent. */
  branch?: string;
  /** Author of the first commit; GIT_AUTHOR_NAME/GIT_AUTHOR_EMAIL, else `Cascade <cascade@localhost>`. */
  author?: { name: string; email: string };
}

export interface InitResult {
  /** Id of the first commit. */
  commit: string;
  /** Committed files, relative to the repository, `/`-separated, sorted. */
  files: string[];
}

/**
 * Creates a fleet repository in `dir` from fleet-repo-template/ with one commit.
 * `dir` must be absent or empty. Everything is built in a hidden staging folder
 * inside `dir` and moved into place at the end, so a failure leaves `dir` as it was.
 */
export async function initFleetRepository(dir: string, opts: InitOptions = {}): Promise<InitResult> {
  const branch = opts.branch ?? 'main';
  checkBranchName(branch);
  const author = opts.author ?? {
    name: process.env.GIT_AUTHOR_NAME || 'Cascade',
    email: process.env.GIT_AUTHOR_EMAIL || 'cascade@localhost',
  };
  const target = path.resolve(dir);
  const createdDir = await prepareTarget(target, dir);

  const staging = await fs.promises.mkdtemp(path.join(target, '.cascade-init-'));
  const moved: string[] = [];
  try {
    const files = await writeRepositoryFiles(staging);
    await git.init({ fs, dir: staging, defaultBranch: branch });
    await git.add({ fs, dir: staging, filepath: files });
    const commit = await git.commit({
      fs,
      dir: staging,
      message: 'Create fleet repository from the Cascade template\n',
      author,
    });
    // .git goes last: an interrupted move never leaves something that looks like a finished repository.
    const entries = (await fs.promises.readdir(staging)).sort((a, b) => Number(a === '.git') - Number(b === '.git'));
    for (const entry of entries) {
      await fs.promises.rename(path.join(staging, entry), path.join(target, entry));
      moved.push(entry);
    }
    await fs.promises.rmdir(staging);
    return { commit, files };
  } catch (err) {
    await fs.promises.rm(staging, { recursive: true, force: true });
    for (const entry of moved) await fs.promises.rm(path.join(target, entry), { recursive: true, force: true });
    if (createdDir) await fs.promises.rm(createdDir, { recursive: true, force: true });
    throw err;
  }
}

/** Creates `target` when absent; returns the topmost directory created, to remove on failure. */
async function prepareTarget(target: string, shownAs: string): Promise<string | undefined> {
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return (await fs.promises.mkdir(target, { recursive: true })) ?? undefined;
  }
  if (!stat.isDirectory()) {
    throw new CascadeError(
      'init-target-not-directory',
      `${shownAs} exists and is not a directory; pass a new or empty directory to \`cascade init\``,
      { dir: target },
    );
  }
  const entries = await fs.promises.readdir(target);
  if (entries.length > 0) {
    const shown = entries.slice(0, 5).join(', ') + (entries.length > 5 ? ', ...' : '');
    throw new CascadeError(
      'init-target-not-empty',
      `${shownAs} is not empty (contains ${shown}); \`cascade init\` only writes into a new or empty directory, so pick another one or empty it first`,
      { dir: target, entries },
    );
  }
  return undefined;
}

/** Copies the template and the schemas into `root`; returns the written files, relative and sorted. */
async function writeRepositoryFiles(root: string): Promise<string[]> {
  const templateFiles = await listFiles(TEMPLATE_DIR);
  if (templateFiles.length === 0) {
    throw new CascadeError('init-template-missing', `no fleet repository template at ${TEMPLATE_DIR}; reinstall Cascade`);
  }
  const schemaFiles = (await listFiles(SCHEMAS_DIR)).filter((f) => !f.includes('/') && f.endsWith('.schema.json'));
  const written: string[] = [];
  for (const relative of templateFiles) {
    const source = path.join(TEMPLATE_DIR, relative);
    let content: Buffer | string = await fs.promises.readFile(source);
    if (/\.ya?ml$/.test(relative)) content = rewriteSchemaModeline(content.toString('utf8'), relative, schemaFiles);
    await writeFile(root, relative, content);
    written.push(relative);
  }
  for (const schema of schemaFiles) {
    const relative = `${REPO_SCHEMAS_DIR}/${schema}`;
    await writeFile(root, relative, await fs.promises.readFile(path.join(SCHEMAS_DIR, schema)));
    written.push(relative);
  }
  return written.sort();
}

/**
 * In the template, a modeline points at the project's schemas/ (e.g. `../../schemas/app.schema.json`
 * from apps/), so editing the template inside the Cascade repository checks against the current schemas.
 * A new repository has its own copy in .cascade/schemas/: point there instead, relative to the file.
 */
function rewriteSchemaModeline(text: string, relativePath: string, schemaFiles: readonly string[]): string {
  const fileDir = path.posix.dirname(relativePath);
  return text.replace(MODELINE, (line: string, prefix: string, reference: string, offset: number) => {
    const referenced = path.resolve(TEMPLATE_DIR, fileDir, reference);
    if (path.dirname(referenced) !== path.resolve(SCHEMAS_DIR)) return line;
    const schema = path.basename(referenced);
    if (!schemaFiles.includes(schema)) {
      const lineNumber = text.slice(0, offset).split('\n').length;
      throw new CascadeError(
        'init-template-invalid',
        `fleet-repo-template/${relativePath}:${lineNumber}:1: the modeline points at schemas/${schema}, which does not exist; fix the modeline or add the schema`,
        { path: relativePath, schema },
      );
    }
    return prefix + path.posix.relative(fileDir, `${REPO_SCHEMAS_DIR}/${schema}`);
  });
}

async function writeFile(root: string, relative: string, content: Buffer | string): Promise<void> {
  const destination = path.join(root, ...relative.split('/'));
  await fs.promises.mkdir(path.dirname(destination), { recursive: true });
  await fs.promises.writeFile(destination, content);
}

/** Files under `dir`, relative and `/`-separated; empty when `dir` is absent. */
async function listFiles(dir: string): Promise<string[]> {
  let entries: fs.Dirent[];
  try {
    entries = await fs.promises.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const files: string[] = [];
  for (const entry of entries) {
    if (entry.isDirectory()) {
      for (const inner of await listFiles(path.join(dir, entry.name))) files.push(`${entry.name}/${inner}`);
    } else if (entry.isFile()) {
      files.push(entry.name);
    }
  }
  return files.sort();
}

/** The rules of `git check-ref-format` that a branch name can break. */
function checkBranchName(branch: string): void {
  const bad =
    branch === '' ||
    branch === '@' ||
    branch.startsWith('-') ||
    branch.startsWith('/') ||
    branch.endsWith('/') ||
    branch.endsWith('.') ||
    branch.includes('..') ||
    branch.includes('//') ||
    branch.includes('@{') ||
    /[\x00-\x20\x7f~^:?*[\\]/.test(branch) ||
    branch.split('/').some((part) => part.startsWith('.') || part.endsWith('.lock'));
  if (bad) {
    throw new CascadeError(
      'init-bad-branch',
      `--branch "${branch}" is not a valid git branch name (no spaces, "..", "~^:?*[\\", leading "-" or ".", or ".lock" ending); try --branch main`,
      { branch },
    );
  }
}
