import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import git from 'isomorphic-git';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTrustedKeys, type TrustedKeys } from '../../src/source/trusted-keys.js';
import { CascadeError } from '../../src/core/errors.js';
import { isCommitSignatureRefusal, splitSignedCommit, verifyCommitSignature } from '../../src/source/verify-commit.js';
import { gitEnv, makeLocalRepo } from '../support/git-fixtures.js';
import { GPG, requireEach, SSH_KEYGEN } from '../support/requirements.js';

/**
 * Real keys, real signed commits: SSH commits are signed by the git binary through
 * ssh-keygen, OpenPGP commits by gpg through git (when gpg is installed) and by
 * openpgp.js through isomorphic-git's onSign (always). Nothing here is committed:
 * every key is generated in a temp directory.
 */

const execFileAsync = promisify(execFile);

/** The refusal a verification throws: a final CascadeError with one of the signature codes. */
async function refusalOf(verdict: Promise<unknown>): Promise<{ code: string; retry: string; message: string }> {
  const err = await verdict.then(
    () => expect.unreachable('the signature was accepted'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CascadeError);
  expect(isCommitSignatureRefusal(err)).toBe(true);
  const { code, retry, message } = err as CascadeError;
  return { code, retry, message };
}
const { ssh: noSshKeygen, gpg: noGpg } = await requireEach({ ssh: SSH_KEYGEN, gpg: GPG });

let root: string;
let repo: string;
let gitdir: string;
let gnupgHome: string;

async function run(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: Buffer } = {}) {
  const child = execFileAsync(cmd, args, { cwd: options.cwd ?? repo, env: options.env ?? gitEnv(), maxBuffer: 16 << 20 });
  if (options.input) {
    child.child.stdin!.end(options.input);
  }
  const { stdout } = await child;
  return stdout.trim();
}

/** Runs git and returns its exit code instead of throwing: for `git verify-commit`. */
async function gitStatus(args: string[], env: NodeJS.ProcessEnv = gitEnv()): Promise<number> {
  try {
    await execFileAsync('git', args, { cwd: repo, env });
    return 0;
  } catch (err) {
    return (err as { code: number }).code;
  }
}

async function sshKey(name: string, email: string): Promise<{ privateKey: string; publicLine: string; fingerprint: string }> {
  const privateKey = join(root, 'keys', name);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', email, '-f', privateKey], { cwd: root });
  const publicLine = (await readFile(`${privateKey}.pub`, 'utf8')).trim();
  const fingerprint = (await run('ssh-keygen', ['-l', '-f', `${privateKey}.pub`], { cwd: root })).split(' ')[1]!;
  return { privateKey, publicLine, fingerprint };
}

async function sshSignedCommit(key: string, message: string, extra: string[] = []): Promise<string> {
  await run('git', ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${key}`, 'commit', '-q', '--allow-empty', '-S', ...extra, '-m', message]);
  return run('git', ['rev-parse', 'HEAD']);
}

async function trustedKeys(name: string, content: string): Promise<TrustedKeys> {
  const path = join(root, name);
  await writeFile(path, content);
  return loadTrustedKeys(path);
}

/** The armored SSHSIG that `ssh-keygen -Y sign` would write, made with node crypto (no ssh-keygen needed). */
function nodeSshSign(privateKey: KeyObject, publicBlob: Buffer, message: string, namespace: string, hash: 'sha256' | 'sha512'): string {
  const str = (b: Buffer | string) => {
    const bytes = typeof b === 'string' ? Buffer.from(b) : b;
    const len = Buffer.alloc(4);
    len.writeUInt32BE(bytes.length);
    return Buffer.concat([len, bytes]);
  };
  const digest = createHash(hash).update(message).digest();
  const signed = Buffer.concat([Buffer.from('SSHSIG'), str(namespace), str(''), str(hash), str(digest)]);
  const sig = str(Buffer.concat([str('ssh-ed25519'), str(sign(null, signed, privateKey))]));
  const version = Buffer.from([0, 0, 0, 1]);
  const blob = Buffer.concat([Buffer.from('SSHSIG'), version, str(publicBlob), str(namespace), str(''), str(hash), sig]);
  const body = blob.toString('base64').replace(/.{1,70}/g, '$&\n');
  return `-----BEGIN SSH SIGNATURE-----\n${body}-----END SSH SIGNATURE-----\n`;
}

function nodeEd25519(comment: string): { privateKey: KeyObject; blob: Buffer; line: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  const blob = Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]);
  return { privateKey, blob, line: `ssh-ed25519 ${blob.toString('base64')} ${comment}` };
}

/** A commit on top of HEAD written by isomorphic-git, signed by `onSign`; the branch does not move. */
async function isoSignedCommit(message: string, signingKey: string, onSign: (payload: string) => Promise<string>): Promise<string> {
  const head = await git.resolveRef({ fs, gitdir, ref: 'HEAD' });
  const { commit } = await git.readCommit({ fs, gitdir, oid: head });
  const person = { name: 'Iso Signer', email: 'iso@example.com', timestamp: 1_700_000_000, timezoneOffset: 0 };
  return git.commit({
    fs,
    gitdir,
    message,
    author: person,
    committer: person,
    tree: commit.tree,
    parent: [head],
    noUpdateBranch: true,
    signingKey,
    onSign: async ({ payload }) => ({ signature: await onSign(payload) }),
  });
}

async function openPgpKey(name: string, email: string) {
  return openpgp.generateKey({ userIDs: [{ name, email }], format: 'object' });
}

async function openPgpSign(privateKey: openpgp.PrivateKey, payload: string): Promise<string> {
  return openpgp.sign({ message: await openpgp.createMessage({ text: payload }), signingKeys: privateKey, detached: true });
}

/** Writes a copy of commit `oid` with another message and the same signature, as an attacker could. */
async function tamperedCopy(oid: string, message: string): Promise<string> {
  const { commit } = await git.readCommit({ fs, gitdir, oid });
  expect(commit.gpgsig).toBeTruthy();
  return git.writeCommit({ fs, gitdir, commit: { ...commit, message } });
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-verify-'));
  await fs.promises.mkdir(join(root, 'keys'), { mode: 0o700 });
  ({ dir: repo } = await makeLocalRepo(join(root, 'repo'), { 'fleet.yaml': 'apiVersion: cascade/v1\n' }));
  gitdir = join(repo, '.git');
  gnupgHome = join(root, 'gnupg');
});

afterAll(async () => {
  if (!noGpg && fs.existsSync(gnupgHome)) {
    await run('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: gnupgHome } }).catch(() => undefined);
  }
  await rm(root, { recursive: true, force: true });
});

describe.skipIf(noSshKeygen)('verifyCommitSignature with SSH keys (git gpg.format=ssh)', () => {
  let alice: Awaited<ReturnType<typeof sshKey>>;
  let mallory: Awaited<ReturnType<typeof sshKey>>;
  let allowedSigners: string;

  beforeAll(async () => {
    alice = await sshKey('alice', 'alice@example.com');
    mallory = await sshKey('mallory', 'mallory@example.com');
    allowedSigners = `# fleet maintainers\n\nalice@example.com ${alice.publicLine}\n`;
  });

  it('accepts a commit signed by a key in the allowed-signers file, as git verify-commit does', async () => {
    const oid = await sshSignedCommit(alice.privateKey, 'web: roll out 2.0');
    const trusted = await trustedKeys('allowed_signers', allowedSigners);
    const result = await verifyCommitSignature({ gitdir, oid, trusted });
    expect(result).toEqual({ format: 'ssh', signer: `alice@example.com (SSH ${alice.fingerprint})` });
    // The git binary agrees on the same commit and file.
    const agree = ['-c', `gpg.ssh.allowedSignersFile=${join(root, 'allowed_signers')}`, 'verify-commit', oid];
    expect(await gitStatus(agree)).toBe(0);
  });

  it('accepts a plain "ssh-ed25519 AAAA... comment" public key line', async () => {
    const oid = await sshSignedCommit(alice.privateKey, 'web: roll out 2.1');
    const trusted = await trustedKeys('plain_keys', `${alice.publicLine}\n`);
    expect(await verifyCommitSignature({ gitdir, oid, trusted })).toEqual({
      format: 'ssh',
      signer: `alice@example.com (SSH ${alice.fingerprint})`,
    });
  });

  it('refuses a commit signed by a key that is not trusted, naming its fingerprint', async () => {
    const oid = await sshSignedCommit(mallory.privateKey, 'web: roll out evil');
    const trusted = await trustedKeys('allowed_signers', allowedSigners);
    expect(await refusalOf(verifyCommitSignature({ gitdir, oid, trusted }))).toEqual({
      code: 'commit-signer-unknown',
      retry: 'final',
      message: `commit ${oid.slice(0, 8)} is signed by an unknown key (SSH ${mallory.fingerprint})`,
    });
  });

  it('refuses a commit whose content changed after signing (same signature, other message)', async () => {
    const good = await sshSignedCommit(alice.privateKey, 'db: roll out 4');
    const forged = await tamperedCopy(good, 'db: roll out 5\n');
    expect(forged).not.toBe(good);
    const trusted = await trustedKeys('allowed_signers', allowedSigners);
    const result = await refusalOf(verifyCommitSignature({ gitdir, oid: forged, trusted }));
    expect(result).toMatchObject({ code: 'commit-signature-invalid', retry: 'final' });
    expect(result.message).toMatch(new RegExp(`^signature of commit ${forged.slice(0, 8)} does not verify \\(the signature does not match the signed bytes\\)$`));
    const gitSays = ['-c', `gpg.ssh.allowedSignersFile=${join(root, 'allowed_signers')}`, 'verify-commit', forged];
    expect(await gitStatus(gitSays)).not.toBe(0);
  });

  it('signs over exactly the bytes git signed, even for a verbatim message with CRLF and trailing blank lines', async () => {
    const messageFile = join(root, 'verbatim-message');
    await writeFile(messageFile, '\n\nweb: roll out 3.0\r\n\r\nwith a CRLF body\r\n\n\n\n');
    await run('git', ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${alice.privateKey}`, 'commit', '-q', '--allow-empty', '-S', '--cleanup=verbatim', '-F', messageFile]);
    const oid = await run('git', ['rev-parse', 'HEAD']);
    const raw = (await git.readObject({ fs, gitdir, oid, format: 'content' })).object as Uint8Array;
    const parts = splitSignedCommit(raw);
    // ssh-keygen itself, given our payload and signature, says they match.
    const sigFile = join(root, 'verbatim.sig');
    await writeFile(sigFile, parts.signature!);
    await run('ssh-keygen', ['-Y', 'check-novalidate', '-n', 'git', '-s', sigFile], { cwd: root, input: parts.payload });
    const trusted = await trustedKeys('allowed_signers', allowedSigners);
    expect(await verifyCommitSignature({ gitdir, oid, trusted })).toMatchObject({ format: 'ssh' });
  });

  it('honours namespaces, valid-after and valid-before on allowed-signers lines', async () => {
    const oid = await sshSignedCommit(alice.privateKey, 'web: roll out 3.1');
    const short = oid.slice(0, 8);
    const fileOnly = await trustedKeys('ns_file', `alice@example.com namespaces="file" ${alice.publicLine}\n`);
    const expired = await trustedKeys('expired', `alice@example.com valid-before="20000101Z" ${alice.publicLine}\n`);
    const current = await trustedKeys('current', `"alice@example.com,ops@example.com" namespaces="git,file",valid-after="20000101" ${alice.publicLine}\n`);
    const refusedNs = await refusalOf(verifyCommitSignature({ gitdir, oid, trusted: fileOnly }));
    expect(refusedNs.code).toBe('commit-signer-not-allowed');
    expect(refusedNs.message).toContain(`commit ${short} is signed by trusted key SSH ${alice.fingerprint}, but the key may not sign it`);
    expect(refusedNs.message).toContain('namespaces="file" does not include "git"');
    const refusedTime = await refusalOf(verifyCommitSignature({ gitdir, oid, trusted: expired }));
    expect(refusedTime.code).toBe('commit-signer-not-allowed');
    expect(refusedTime.message).toContain('after valid-before 2000-01-01T00:00:00.000Z');
    expect(await verifyCommitSignature({ gitdir, oid, trusted: current })).toEqual({
      format: 'ssh',
      signer: `alice@example.com,ops@example.com (SSH ${alice.fingerprint})`,
    });
  });
});

describe('verifyCommitSignature with SSH signatures made without ssh-keygen', () => {
  it('accepts a sha256 SSHSIG from a node-generated key and refuses one made for another namespace', async () => {
    const key = nodeEd25519('robot@example.com');
    const trusted = await trustedKeys('node_keys', `${key.line}\n`);
    const good = await isoSignedCommit('robot: roll out 1.1\n', 'unused', async (payload) =>
      nodeSshSign(key.privateKey, key.blob, payload, 'git', 'sha256'),
    );
    expect(await verifyCommitSignature({ gitdir, oid: good, trusted })).toMatchObject({ format: 'ssh', signer: expect.stringContaining('robot@example.com') });
    const wrongNamespace = await isoSignedCommit('robot: roll out 1.2\n', 'unused', async (payload) =>
      nodeSshSign(key.privateKey, key.blob, payload, 'file', 'sha512'),
    );
    expect(await refusalOf(verifyCommitSignature({ gitdir, oid: wrongNamespace, trusted }))).toEqual({
      code: 'commit-signature-invalid',
      retry: 'final',
      message: `signature of commit ${wrongNamespace.slice(0, 8)} does not verify (its namespace is "file", not "git")`,
    });
  });
});

describe('verifyCommitSignature with OpenPGP keys', () => {
  it('refuses an unsigned commit', async () => {
    const oid = await run('git', ['commit', '-q', '--allow-empty', '-m', 'unsigned change']).then(() => run('git', ['rev-parse', 'HEAD']));
    const olivia = await openPgpKey('Olivia', 'olivia@example.com');
    const trusted = await trustedKeys('pgp_unsigned', olivia.publicKey.armor());
    expect(await refusalOf(verifyCommitSignature({ gitdir, oid, trusted }))).toEqual({
      code: 'commit-unsigned',
      retry: 'final',
      message: `commit ${oid.slice(0, 8)} is not signed`,
    });
  });

  it('accepts a commit signed with openpgp.js by a trusted key, and refuses the same signature on a changed commit', async () => {
    const olivia = await openPgpKey('Olivia', 'olivia@example.com');
    const oid = await isoSignedCommit('web: roll out 4.0\n', olivia.privateKey.armor(), (payload) => openPgpSign(olivia.privateKey, payload));
    const trusted = await trustedKeys('pgp_trusted', `# release signing key\n${olivia.publicKey.armor()}\n`);
    const fingerprint = olivia.publicKey.getFingerprint().toUpperCase();
    expect(await verifyCommitSignature({ gitdir, oid, trusted })).toEqual({
      format: 'openpgp',
      signer: `Olivia <olivia@example.com> (OpenPGP ${fingerprint})`,
    });
    const forged = await tamperedCopy(oid, 'web: roll out 6.6.6\n');
    const result = await refusalOf(verifyCommitSignature({ gitdir, oid: forged, trusted }));
    expect(result.code).toBe('commit-signature-invalid');
    expect(result.message).toMatch(new RegExp(`^signature of commit ${forged.slice(0, 8)} does not verify \\(OpenPGP: `));
  });

  it('refuses a commit signed by an OpenPGP key that is not trusted, naming its key id', async () => {
    const olivia = await openPgpKey('Olivia', 'olivia@example.com');
    const oscar = await openPgpKey('Oscar', 'oscar@example.com');
    const oid = await isoSignedCommit('web: roll out 4.1\n', oscar.privateKey.armor(), (payload) => openPgpSign(oscar.privateKey, payload));
    const trusted = await trustedKeys('pgp_olivia', olivia.publicKey.armor());
    const signingKey = await oscar.privateKey.getSigningKey();
    expect(await refusalOf(verifyCommitSignature({ gitdir, oid, trusted }))).toEqual({
      code: 'commit-signer-unknown',
      retry: 'final',
      message: `commit ${oid.slice(0, 8)} is signed by an unknown key (OpenPGP key id ${signingKey.getKeyID().toHex().toUpperCase()})`,
    });
  });

  it.skipIf(noGpg)('accepts a commit signed by gpg through the git binary', async () => {
    const env = { ...gitEnv(), GNUPGHOME: gnupgHome };
    await fs.promises.mkdir(gnupgHome, { mode: 0o700, recursive: true });
    await run('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key', 'Gina <gina@example.com>', 'ed25519', 'sign', 'never'], { env });
    const armored = await run('gpg', ['--armor', '--export', 'gina@example.com'], { env });
    const fingerprint = (await run('gpg', ['--with-colons', '--fingerprint', 'gina@example.com'], { env }))
      .split('\n')
      .find((line) => line.startsWith('fpr:'))!
      .split(':')[9]!;
    await run('git', ['-c', 'user.signingkey=gina@example.com', 'commit', '-q', '--allow-empty', '-S', '-m', 'db: roll out 7'], { env });
    const oid = await run('git', ['rev-parse', 'HEAD']);
    expect(await gitStatus(['verify-commit', oid], env)).toBe(0);
    const trusted = await trustedKeys('pgp_gina', `${armored}\n`);
    expect(await verifyCommitSignature({ gitdir, oid, trusted })).toEqual({
      format: 'openpgp',
      signer: `Gina <gina@example.com> (OpenPGP ${fingerprint})`,
    });
  });
});

describe('loadTrustedKeys', () => {
  it('reads OpenPGP blocks and SSH lines from one file, with comments and blank lines', async () => {
    const olivia = await openPgpKey('Olivia', 'olivia@example.com');
    const ssh = nodeEd25519('robot@example.com');
    const trusted = await trustedKeys('mixed', `# ops team\r\n\r\n${olivia.publicKey.armor()}\nops@example.com ${ssh.line}\n   \n`);
    expect(trusted.openpgp.map((k) => k.userIds)).toEqual([['Olivia <olivia@example.com>']]);
    expect(trusted.ssh.map((k) => [k.principals, k.comment])).toEqual([[['ops@example.com'], 'robot@example.com']]);
    expect(trusted.ssh[0]!.source).toBe(`${join(root, 'mixed')}:${olivia.publicKey.armor().trim().split("\n").length + 4}`);
  });

  it('names the file and line of a line that is not a key', async () => {
    const ssh = nodeEd25519('robot@example.com');
    const path = join(root, 'bad_line');
    await writeFile(path, `# keys\n${ssh.line}\nthis is not a key\n`);
    await expect(loadTrustedKeys(path)).rejects.toMatchObject({
      code: 'trusted-keys-invalid',
      message: expect.stringContaining(`${path}:3: expected an SSH key line`),
    });
  });

  it('refuses SSH key types other than ed25519, saying only ed25519 is supported', async () => {
    const path = join(root, 'rsa_line');
    await writeFile(path, 'alice@example.com ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 alice\n');
    await expect(loadTrustedKeys(path)).rejects.toMatchObject({
      code: 'trusted-keys-invalid',
      message: `${path}:1: key type ssh-rsa is not supported: Cascade verifies SSH signatures made with ssh-ed25519 keys only.`,
    });
  });

  it('refuses key data that is not the key type it claims', async () => {
    const path = join(root, 'mismatch');
    const rsaBlob = Buffer.concat([Buffer.from([0, 0, 0, 7]), Buffer.from('ssh-rsa'), Buffer.from([0, 0, 0, 1, 1])]);
    await writeFile(path, `\nalice@example.com ssh-ed25519 ${rsaBlob.toString('base64')}\n`);
    await expect(loadTrustedKeys(path)).rejects.toMatchObject({
      code: 'trusted-keys-invalid',
      message: `${path}:2: the key data is not an ssh-ed25519 key (it holds ssh-rsa).`,
    });
  });

  it('names the BEGIN line of a damaged or unterminated OpenPGP block, and refuses private keys', async () => {
    const olivia = await openPgpKey('Olivia', 'olivia@example.com');
    const lines = olivia.publicKey.armor().trim().split('\n');
    const damaged = [...lines.slice(0, 3), 'AAAA', lines[3]!.replace(/^./, '*'), ...lines.slice(4)].join('\n');
    const damagedPath = join(root, 'damaged');
    await writeFile(damagedPath, `# one\n${damaged}\n`);
    await expect(loadTrustedKeys(damagedPath)).rejects.toMatchObject({
      code: 'trusted-keys-invalid',
      message: expect.stringMatching(new RegExp(`^${damagedPath}:2: the OpenPGP public key block cannot be read: `)),
    });
    const openPath = join(root, 'unterminated');
    await writeFile(openPath, lines.slice(0, -1).join('\n'));
    await expect(loadTrustedKeys(openPath)).rejects.toMatchObject({
      message: `${openPath}:1: the OpenPGP key block has no "-----END PGP PUBLIC KEY BLOCK-----" line.`,
    });
    const privatePath = join(root, 'private');
    await writeFile(privatePath, olivia.privateKey.armor());
    await expect(loadTrustedKeys(privatePath)).rejects.toMatchObject({
      code: 'trusted-keys-invalid',
      message: expect.stringContaining(`${privatePath}:1: this is an OpenPGP PRIVATE key`),
    });
  });

  it('refuses a missing file and a file without keys, naming the file', async () => {
    const missing = join(root, 'no-such-file');
    await expect(loadTrustedKeys(missing)).rejects.toMatchObject({
      code: 'trusted-keys-invalid',
      message: expect.stringContaining(`cannot read the trusted keys file ${missing}`),
    });
    const empty = join(root, 'only-comments');
    await writeFile(empty, '# nobody yet\n\n');
    await expect(loadTrustedKeys(empty)).rejects.toMatchObject({
      code: 'trusted-keys-invalid',
      message: expect.stringContaining(`the trusted keys file ${empty} holds no keys`),
    });
  });
});
