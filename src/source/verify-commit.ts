import fs from 'node:fs';
import git from 'isomorphic-git';
import * as openpgp from 'openpgp';
import { CascadeError } from '../core/errors.js';
import { parseArmoredSshSignature, sshFingerprint, verifySshSignature, SSH_ED25519 } from './sshsig.js';
import type { TrustedKeys, TrustedOpenPgpKey, TrustedSshKey } from './trusted-keys.js';

/** Who signed a commit whose signature verified against a trusted key. */
export interface VerifiedCommit {
  signer: string;
  format: 'openpgp' | 'ssh';
}

/**
 * The final refusals of verifyCommitSignature, as CascadeError codes. Each is about the commit itself,
 * so the same head gets the same answer on every pass (Flux's model: a refusal sticks until the input
 * changes); a commit that cannot be read at all throws `commit-unreadable` instead.
 */
export const COMMIT_SIGNATURE_REFUSALS = [
  'commit-unsigned',
  'commit-signature-unsupported',
  'commit-signer-unknown',
  'commit-signer-not-allowed',
  'commit-signature-invalid',
] as const;
export type CommitSignatureRefusal = (typeof COMMIT_SIGNATURE_REFUSALS)[number];

const REFUSAL_CODES: ReadonlySet<string> = new Set(COMMIT_SIGNATURE_REFUSALS);

/** Whether `err` is one of verifyCommitSignature's refusals (as opposed to a failure to read the commit). */
export function isCommitSignatureRefusal(err: unknown): err is CascadeError & { code: CommitSignatureRefusal } {
  return err instanceof CascadeError && REFUSAL_CODES.has(err.code);
}

function refusal(code: CommitSignatureRefusal, message: string, oid: string): CascadeError {
  return new CascadeError(code, message, { oid }, { retry: 'final' });
}

/** A commit split the way git splits it to verify: the signed bytes and the signature. */
export interface SignedCommitParts {
  /** The commit object without its signature headers: exactly the bytes the signer signed. */
  payload: Buffer;
  /** The armored signature, or undefined when the commit is not signed. */
  signature?: string;
  /** The committer time, which git uses as the time to check SSH key validity at. */
  committedAt?: Date;
}

const GIT_SSH_NAMESPACE = 'git';

/**
 * Checks that commit `oid` carries a signature that verifies against one of the trusted
 * keys, and says who signed it. Every refusal throws a final CascadeError whose code is one of
 * COMMIT_SIGNATURE_REFUSALS and whose message names the commit and says why; a commit that cannot
 * be read at all throws `commit-unreadable`.
 *
 * The signed bytes are cut from the raw object here rather than taken from isomorphic-git's
 * `readCommit().payload`: that payload is only right for PGP signatures on commits whose
 * message git stored normalized (it looks for the PGP end marker and rewrites line endings),
 * so it is wrong for every SSH-signed commit.
 */
export async function verifyCommitSignature(opts: {
  gitdir: string;
  oid: string;
  trusted: TrustedKeys;
}): Promise<VerifiedCommit> {
  const { oid } = opts;
  const short = oid.slice(0, 8);
  const parts = splitSignedCommit(await readRawCommit(opts.gitdir, oid));
  if (parts.signature === undefined) throw refusal('commit-unsigned', `commit ${short} is not signed`, oid);
  const armor = parts.signature.trimStart();
  if (armor.startsWith('-----BEGIN SSH SIGNATURE-----')) return verifySsh(oid, parts, opts.trusted);
  if (armor.startsWith('-----BEGIN PGP SIGNATURE-----')) return verifyOpenPgp(oid, parts, opts.trusted);
  const firstLine = armor.split('\n', 1)[0];
  throw refusal(
    'commit-signature-unsupported',
    `commit ${short} has a signature Cascade cannot check (${firstLine}); sign with OpenPGP or an SSH ed25519 key`,
    oid,
  );
}

/**
 * Splits a raw commit object as git's `parse_buffer_signed_by_header` does: the `gpgsig`
 * header and its continuation lines (each starting with one space) form the signature;
 * everything else, byte for byte, is the payload. Other `gpgsig*` headers (the SHA-256
 * repository's `gpgsig-sha256`) are left out of the payload too, as git does.
 */
export function splitSignedCommit(raw: Uint8Array): SignedCommitParts {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const payload: Buffer[] = [];
  const signature: Buffer[] = [];
  let inSignature = false;
  let otherSignature = false;
  let sawSignature = false;
  let committedAt: Date | undefined;
  let start = 0;
  while (start < buf.length) {
    const newline = buf.indexOf(0x0a, start);
    let next = newline < 0 ? buf.length : newline + 1;
    const line = buf.subarray(start, next);
    let sig: Buffer | undefined;
    if (inSignature && line[0] === 0x20) {
      sig = line.subarray(1);
    } else if (startsWith(line, 'gpgsig ')) {
      sig = line.subarray('gpgsig '.length);
      otherSignature = false;
    } else if (startsWith(line, 'gpgsig')) {
      otherSignature = true;
    } else if (otherSignature && line[0] !== 0x20) {
      otherSignature = false;
    }
    if (sig) {
      signature.push(sig);
      sawSignature = true;
      inSignature = true;
    } else {
      if (line[0] === 0x0a) next = buf.length; // the blank line: the rest is the message
      if (!otherSignature) payload.push(buf.subarray(start, next));
      inSignature = false;
      if (startsWith(line, 'committer ')) committedAt = committerTime(line.toString('utf8'));
    }
    start = next;
  }
  return {
    payload: Buffer.concat(payload),
    signature: sawSignature ? Buffer.concat(signature).toString('utf8') : undefined,
    committedAt,
  };
}

function verifySsh(oid: string, parts: SignedCommitParts, trusted: TrustedKeys): VerifiedCommit {
  const short = oid.slice(0, 8);
  const doesNotVerify = (err: unknown): CascadeError => {
    const problem = err instanceof CascadeError && typeof err.details?.['problem'] === 'string' ? err.details['problem'] : (err as Error).message;
    return refusal('commit-signature-invalid', `signature of commit ${short} does not verify (${problem})`, oid);
  };
  let sig;
  try {
    sig = parseArmoredSshSignature(parts.signature!);
  } catch (err) {
    throw doesNotVerify(err);
  }
  const fingerprint = sshFingerprint(sig.publicKeyBlob);
  if (sig.keyType !== SSH_ED25519) {
    throw refusal(
      'commit-signature-unsupported',
      `commit ${short} is signed with an ${sig.keyType} key (SSH ${fingerprint}); Cascade verifies only ${SSH_ED25519} SSH signatures`,
      oid,
    );
  }
  const candidates = trusted.ssh.filter((key) => key.blob.equals(sig.publicKeyBlob));
  if (candidates.length === 0) throw refusal('commit-signer-unknown', `commit ${short} is signed by an unknown key (SSH ${fingerprint})`, oid);
  try {
    verifySshSignature(sig, parts.payload, candidates[0]!.publicKey, GIT_SSH_NAMESPACE);
  } catch (err) {
    throw doesNotVerify(err);
  }

  const refusals: string[] = [];
  for (const key of candidates) {
    const why = sshKeyRefusal(key, parts.committedAt);
    if (!why) return { signer: sshSigner(key), format: 'ssh' };
    refusals.push(`${key.source}: ${why}`);
  }
  throw refusal(
    'commit-signer-not-allowed',
    `commit ${short} is signed by trusted key SSH ${fingerprint}, but the key may not sign it (${refusals.join('; ')})`,
    oid,
  );
}

/** Why an allowed-signers line does not cover a git signature made at `at`, or undefined when it does. */
function sshKeyRefusal(key: TrustedSshKey, at: Date | undefined): string | undefined {
  if (key.namespaces && !key.namespaces.includes(GIT_SSH_NAMESPACE)) {
    return `namespaces="${key.namespaces.join(',')}" does not include "${GIT_SSH_NAMESPACE}"`;
  }
  if ((key.validAfter || key.validBefore) && !at) return 'the commit has no committer time to check valid-after/valid-before against';
  if (key.validAfter && at! < key.validAfter) return `the commit is dated ${at!.toISOString()}, before valid-after ${key.validAfter.toISOString()}`;
  if (key.validBefore && at! > key.validBefore) return `the commit is dated ${at!.toISOString()}, after valid-before ${key.validBefore.toISOString()}`;
  return undefined;
}

function sshSigner(key: TrustedSshKey): string {
  const name = key.principals.length > 0 ? key.principals.join(',') : key.comment;
  return name ? `${name} (SSH ${key.fingerprint})` : `SSH ${key.fingerprint}`;
}

async function verifyOpenPgp(oid: string, parts: SignedCommitParts, trusted: TrustedKeys): Promise<VerifiedCommit> {
  const short = oid.slice(0, 8);
  let signature: openpgp.Signature;
  try {
    signature = await openpgp.readSignature({ armoredSignature: parts.signature! });
  } catch (err) {
    throw refusal(
      'commit-signature-invalid',
      `signature of commit ${short} does not verify (the OpenPGP signature cannot be read: ${(err as Error).message})`,
      oid,
    );
  }
  const keyIds = signature.getSigningKeyIDs();
  const signer = findOpenPgpKey(trusted.openpgp, keyIds);
  if (!signer) {
    const ids = keyIds.map((id) => id.toHex().toUpperCase()).join(', ') || 'none named';
    throw refusal('commit-signer-unknown', `commit ${short} is signed by an unknown key (OpenPGP key id ${ids})`, oid);
  }
  try {
    const result = await openpgp.verify({
      message: await openpgp.createMessage({ binary: parts.payload }),
      signature,
      verificationKeys: [signer.key],
      format: 'binary',
    });
    if (result.signatures.length === 0) throw new Error('no signature in it belongs to the key');
    // Every signature packet must hold: one bad packet beside a good one is not a good signature.
    for (const entry of result.signatures) await entry.verified;
  } catch (err) {
    throw refusal('commit-signature-invalid', `signature of commit ${short} does not verify (OpenPGP: ${(err as Error).message})`, oid);
  }
  const name = signer.userIds[0];
  return { signer: name ? `${name} (OpenPGP ${signer.fingerprint})` : `OpenPGP ${signer.fingerprint}`, format: 'openpgp' };
}

function findOpenPgpKey(keys: TrustedOpenPgpKey[], ids: openpgp.KeyID[]): TrustedOpenPgpKey | undefined {
  return keys.find((trusted) => ids.some((id) => trusted.key.getKeys(id).length > 0));
}

async function readRawCommit(gitdir: string, oid: string): Promise<Uint8Array> {
  let result;
  try {
    result = await git.readObject({ fs, gitdir, oid, format: 'content' });
  } catch (err) {
    throw new CascadeError('commit-unreadable', `cannot read commit ${oid} in ${gitdir}: ${(err as Error).message}`, { gitdir, oid });
  }
  if (result.type !== 'commit') {
    throw new CascadeError('commit-unreadable', `object ${oid} in ${gitdir} is a ${result.type}, not a commit`, { gitdir, oid });
  }
  return result.object as Uint8Array;
}

function startsWith(line: Buffer, prefix: string): boolean {
  return line.length >= prefix.length && line.toString('latin1', 0, prefix.length) === prefix;
}

function committerTime(line: string): Date | undefined {
  const m = / (\d+) [+-]\d{4}\n?$/.exec(line);
  return m ? new Date(Number(m[1]) * 1000) : undefined;
}
