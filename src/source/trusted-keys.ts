import { readFile } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import * as openpgp from 'openpgp';
import { CascadeError } from '../core/errors.js';
import { ed25519PublicKeyFromBlob, sshFingerprint, sshKeyType, SSH_ED25519 } from './sshsig.js';

/**
 * The keys whose signatures `--verify-commits` accepts, read from one file that may mix
 * armored OpenPGP public key blocks with SSH keys, one per line, in git's allowed-signers
 * format (`principals [options] ssh-ed25519 AAAA... [comment]`) or as a plain public key
 * line (`ssh-ed25519 AAAA... [comment]`). `#` starts a comment line; blank lines are fine.
 */
export interface TrustedKeys {
  /** The file the keys came from, for messages. */
  path: string;
  ssh: TrustedSshKey[];
  openpgp: TrustedOpenPgpKey[];
}

export interface TrustedSshKey {
  keyType: typeof SSH_ED25519;
  /** The public key as an SSH wire blob; its fingerprint identifies it. */
  blob: Buffer;
  publicKey: KeyObject;
  /** `SHA256:...`, as `ssh-keygen -l` prints it. */
  fingerprint: string;
  /** Allowed-signers principals (usually e-mail addresses); empty for a plain key line. */
  principals: string[];
  comment?: string;
  /** From the `namespaces="..."` option: the key signs only in these namespaces. */
  namespaces?: string[];
  /** From `valid-after` / `valid-before`: the key counts only for commits made in this window. */
  validAfter?: Date;
  validBefore?: Date;
  /** `file:line` it was read from. */
  source: string;
}

export interface TrustedOpenPgpKey {
  key: openpgp.Key;
  /** Primary key fingerprint, upper-case hex. */
  fingerprint: string;
  userIds: string[];
  /** `file:line` of the block's BEGIN line. */
  source: string;
}

const PGP_PUBLIC_BEGIN = '-----BEGIN PGP PUBLIC KEY BLOCK-----';
const PGP_PUBLIC_END = '-----END PGP PUBLIC KEY BLOCK-----';
const PGP_PRIVATE_BEGIN = '-----BEGIN PGP PRIVATE KEY BLOCK-----';
const SSH_KEY_TYPE = /^(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9-]+@openssh\.com|[a-z0-9-]+-cert-v01@openssh\.com)$/;

/** Reads and parses a trusted keys file; any problem is a CascadeError `trusted-keys-invalid` naming file and line. */
export async function loadTrustedKeys(path: string): Promise<TrustedKeys> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CascadeError(
      'trusted-keys-invalid',
      `cannot read the trusted keys file ${path} (--trusted-keys): ${(err as Error).message}`,
      { path },
    );
  }
  return parseTrustedKeys(text, path);
}

/** Parses the text of a trusted keys file; `path` is only used in messages. */
export async function parseTrustedKeys(text: string, path: string): Promise<TrustedKeys> {
  const lines = text.split('\n').map((line) => line.replace(/\r$/, ''));
  const result: TrustedKeys = { path, ssh: [], openpgp: [] };
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line === PGP_PUBLIC_BEGIN) {
      const end = lines.findIndex((l, j) => j > i && l.trim() === PGP_PUBLIC_END);
      if (end < 0) throw invalid(path, lineNo, `the OpenPGP key block has no "${PGP_PUBLIC_END}" line`);
      result.openpgp.push(...(await parseOpenPgpBlock(lines.slice(i, end + 1).join('\n'), path, lineNo)));
      i = end;
      continue;
    }
    if (line === PGP_PRIVATE_BEGIN) {
      throw invalid(path, lineNo, 'this is an OpenPGP PRIVATE key; put only public keys here (gpg --armor --export KEYID)');
    }
    if (line.startsWith('-----')) {
      throw invalid(path, lineNo, `"${line}" is not an OpenPGP public key block; expected "${PGP_PUBLIC_BEGIN}"`);
    }
    result.ssh.push(parseSshLine(line, path, lineNo));
  }
  if (result.ssh.length === 0 && result.openpgp.length === 0) {
    throw new CascadeError(
      'trusted-keys-invalid',
      `the trusted keys file ${path} holds no keys: add OpenPGP public keys (gpg --armor --export KEYID) or lines "email ssh-ed25519 AAAA...".`,
      { path },
    );
  }
  return result;
}

async function parseOpenPgpBlock(armored: string, path: string, lineNo: number): Promise<TrustedOpenPgpKey[]> {
  let keys: openpgp.Key[];
  try {
    keys = await openpgp.readKeys({ armoredKeys: armored });
  } catch (err) {
    throw invalid(path, lineNo, `the OpenPGP public key block cannot be read: ${(err as Error).message}`);
  }
  return keys.map((key) => {
    if (key.isPrivate()) throw invalid(path, lineNo, 'the block holds an OpenPGP PRIVATE key; put only public keys here');
    return {
      key,
      fingerprint: key.getFingerprint().toUpperCase(),
      userIds: key.getUserIDs(),
      source: `${path}:${lineNo}`,
    };
  });
}

function parseSshLine(line: string, path: string, lineNo: number): TrustedSshKey {
  const tokens = tokenize(line);
  if (!tokens) throw invalid(path, lineNo, 'a double quote is not closed');
  let principals: string[] = [];
  let options: string | undefined;
  let at: number;
  if (SSH_KEY_TYPE.test(tokens[0]!)) {
    at = 0;
  } else if (tokens[1] !== undefined && SSH_KEY_TYPE.test(tokens[1])) {
    principals = splitPrincipals(tokens[0]!);
    at = 1;
  } else if (tokens[2] !== undefined && SSH_KEY_TYPE.test(tokens[2])) {
    principals = splitPrincipals(tokens[0]!);
    options = tokens[1];
    at = 2;
  } else {
    throw invalid(
      path,
      lineNo,
      'expected an SSH key line "email ssh-ed25519 AAAA... [comment]" (git allowed-signers) or "ssh-ed25519 AAAA... [comment]", or an OpenPGP public key block',
    );
  }
  const keyType = tokens[at]!;
  const base64 = tokens[at + 1];
  const comment = tokens.slice(at + 2).join(' ') || undefined;
  if (keyType !== SSH_ED25519) {
    throw invalid(path, lineNo, `key type ${keyType} is not supported: Cascade verifies SSH signatures made with ${SSH_ED25519} keys only`);
  }
  if (!base64) throw invalid(path, lineNo, `the ${keyType} key has no base64 key data after the key type`);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw invalid(path, lineNo, `the key data "${abbreviate(base64)}" is not base64`);
  const blob = Buffer.from(base64, 'base64');
  const embeddedType = sshKeyType(blob);
  if (embeddedType !== keyType) {
    throw invalid(path, lineNo, `the key data is not an ${keyType} key (it holds ${embeddedType ?? 'no readable key'})`);
  }
  let publicKey: KeyObject;
  try {
    publicKey = ed25519PublicKeyFromBlob(blob);
  } catch (err) {
    throw invalid(path, lineNo, `the ${keyType} key data is malformed: ${(err as Error).message}`);
  }
  const key: TrustedSshKey = {
    keyType: SSH_ED25519,
    blob,
    publicKey,
    fingerprint: sshFingerprint(blob),
    principals,
    comment,
    source: `${path}:${lineNo}`,
  };
  if (options !== undefined) applyOptions(key, options, path, lineNo);
  return key;
}

/** The allowed-signers options git passes through to ssh-keygen; anything else is refused rather than ignored. */
function applyOptions(key: TrustedSshKey, options: string, path: string, lineNo: number): void {
  for (const option of splitOutsideQuotes(options, ',')) {
    const eq = option.indexOf('=');
    const name = (eq < 0 ? option : option.slice(0, eq)).toLowerCase();
    const value = eq < 0 ? undefined : unquote(option.slice(eq + 1));
    if (name === 'namespaces' && value !== undefined) {
      key.namespaces = value.split(',').map((n) => n.trim()).filter(Boolean);
    } else if ((name === 'valid-after' || name === 'valid-before') && value !== undefined) {
      const date = parseSshTime(value);
      if (!date) throw invalid(path, lineNo, `${name}="${value}" is not a time YYYYMMDD[HHMM[SS]][Z]`);
      if (name === 'valid-after') key.validAfter = date;
      else key.validBefore = date;
    } else if (name === 'cert-authority') {
      throw invalid(path, lineNo, 'cert-authority keys are not supported; list the signing keys themselves');
    } else {
      throw invalid(path, lineNo, `option "${option}" is not supported (supported: namespaces, valid-after, valid-before)`);
    }
  }
}

/** ssh-keygen's time format: local time unless it ends in Z. */
function parseSshTime(value: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(Z)?$/.exec(value);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = [1, 2, 3, 4, 5, 6].map((n) => Number(m[n] ?? 0)) as [number, number, number, number, number, number];
  const date = m[7] ? new Date(Date.UTC(y, mo - 1, d, h, mi, s)) : new Date(y, mo - 1, d, h, mi, s);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** Splits on whitespace outside double quotes, keeping quotes; undefined when a quote is left open. */
function tokenize(line: string): string[] | undefined {
  const tokens: string[] = [];
  let current = '';
  let quoted = false;
  for (const ch of line) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && /\s/.test(ch)) {
      if (current) tokens.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (quoted) return undefined;
  if (current) tokens.push(current);
  return tokens;
}

function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = '';
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && ch === separator) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts.filter(Boolean);
}

function splitPrincipals(token: string): string[] {
  return unquote(token).split(',').map((p) => p.trim()).filter(Boolean);
}

function unquote(text: string): string {
  return text.length >= 2 && text.startsWith('"') && text.endsWith('"') ? text.slice(1, -1) : text;
}

function abbreviate(text: string): string {
  return text.length > 24 ? `${text.slice(0, 24)}...` : text;
}

function invalid(path: string, lineNo: number, what: string): CascadeError {
  return new CascadeError('trusted-keys-invalid', `${path}:${lineNo}: ${what}.`, { path, line: lineNo });
}
