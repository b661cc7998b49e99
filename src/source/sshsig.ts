import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { CascadeError } from '../core/errors.js';

/**
 * The SSHSIG signature format that `ssh-keygen -Y sign` writes and git stores in a
 * commit's `gpgsig` header when `gpg.format=ssh` (OpenSSH PROTOCOL.sshsig). Parsed and
 * verified here with Node's crypto so the region needs no ssh-keygen binary.
 * Only ssh-ed25519 keys are supported.
 */

const MAGIC = Buffer.from('SSHSIG', 'ascii');
const ARMOR_BEGIN = '-----BEGIN SSH SIGNATURE-----';
const ARMOR_END = '-----END SSH SIGNATURE-----';
const ED25519 = 'ssh-ed25519';
const HASHES: Record<string, 'sha256' | 'sha512'> = { sha256: 'sha256', sha512: 'sha512' };

export const SSH_ED25519 = ED25519;

export interface SshSignature {
  /** The signer's public key as an SSH wire blob (`string keytype, ...`). */
  publicKeyBlob: Buffer;
  /** Key type named inside publicKeyBlob, e.g. `ssh-ed25519`. */
  keyType: string;
  namespace: string;
  reserved: Buffer;
  /** `sha256` or `sha512`: the hash of the message that was signed. */
  hashAlgorithm: string;
  /** Algorithm named inside the signature blob, e.g. `ssh-ed25519`. */
  signatureAlgorithm: string;
  /** The raw signature bytes (64 for ed25519). */
  signature: Buffer;
}

/** `SHA256:<base64 without padding>`, as `ssh-keygen -l` prints it. */
export function sshFingerprint(publicKeyBlob: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(publicKeyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type at the start of an SSH public key blob, or undefined when the blob is malformed. */
export function sshKeyType(publicKeyBlob: Uint8Array): string | undefined {
  try {
    return new WireReader(Buffer.from(publicKeyBlob)).string().toString('latin1');
  } catch {
    return undefined;
  }
}

/**
 * The ed25519 public key of an `ssh-ed25519` wire blob as a KeyObject.
 * Throws a plain Error saying what is wrong; callers add where.
 */
export function ed25519PublicKeyFromBlob(publicKeyBlob: Uint8Array): KeyObject {
  const reader = new WireReader(Buffer.from(publicKeyBlob));
  const type = reader.string().toString('latin1');
  if (type !== ED25519) throw new Error(`key type is ${type}; only ${ED25519} keys are supported`);
  const raw = reader.string();
  if (raw.length !== 32) throw new Error(`an ${ED25519} key holds 32 bytes, this one ${raw.length}`);
  if (!reader.done()) throw new Error('the key blob has extra bytes after the key');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

/** Parses an armored SSHSIG blob; throws CascadeError `sshsig-invalid` saying what is wrong. */
export function parseArmoredSshSignature(armored: string): SshSignature {
  const text = armored.replace(/\r/g, '').trim();
  if (!text.startsWith(ARMOR_BEGIN) || !text.endsWith(ARMOR_END)) {
    throw invalid(`it is not wrapped in "${ARMOR_BEGIN}" ... "${ARMOR_END}"`);
  }
  const body = text.slice(ARMOR_BEGIN.length, text.length - ARMOR_END.length).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw invalid('its body is not base64');
  return parseSshSignature(Buffer.from(body, 'base64'));
}

/** Parses a binary SSHSIG blob; throws CascadeError `sshsig-invalid` saying what is wrong. */
export function parseSshSignature(blob: Buffer): SshSignature {
  try {
    const reader = new WireReader(blob);
    const magic = reader.bytes(MAGIC.length);
    if (!magic.equals(MAGIC)) throw new Error('it does not start with "SSHSIG"');
    const version = reader.uint32();
    if (version !== 1) throw new Error(`its version is ${version}; only version 1 exists`);
    const publicKeyBlob = reader.string();
    const namespace = reader.string().toString('utf8');
    const reserved = reader.string();
    const hashAlgorithm = reader.string().toString('latin1');
    const signatureBlob = reader.string();
    if (!reader.done()) throw new Error('it has extra bytes at the end');
    const sigReader = new WireReader(signatureBlob);
    const signatureAlgorithm = sigReader.string().toString('latin1');
    const signature = sigReader.string();
    const keyType = new WireReader(publicKeyBlob).string().toString('latin1');
    return { publicKeyBlob, keyType, namespace, reserved, hashAlgorithm, signatureAlgorithm, signature };
  } catch (err) {
    if (err instanceof CascadeError) throw err;
    throw invalid((err as Error).message);
  }
}

/**
 * The bytes the signer actually signed: the magic preamble, then namespace, reserved
 * and hash algorithm as SSH strings, then the hash of the message as an SSH string.
 */
export function sshSignedData(
  sig: Pick<SshSignature, 'namespace' | 'reserved' | 'hashAlgorithm'>,
  message: Uint8Array,
): Buffer {
  const hash = HASHES[sig.hashAlgorithm];
  if (!hash) throw new Error(`hash algorithm ${sig.hashAlgorithm} is not sha256 or sha512`);
  return Buffer.concat([
    MAGIC,
    sshString(Buffer.from(sig.namespace, 'utf8')),
    sshString(sig.reserved),
    sshString(Buffer.from(sig.hashAlgorithm, 'latin1')),
    sshString(createHash(hash).update(message).digest()),
  ]);
}

/**
 * Checks an ed25519 SSHSIG over `message` against `publicKey`, in namespace
 * `namespace`. The key embedded in the signature must be the one given: the caller
 * looked it up among trusted keys by that embedded key's fingerprint. Returns when the signature
 * holds; otherwise throws a final CascadeError `sshsig-mismatch` (it verifies, but not for this
 * message, key or namespace) or `sshsig-invalid` (it cannot be checked at all), its message saying why.
 */
export function verifySshSignature(sig: SshSignature, message: Uint8Array, publicKey: KeyObject, namespace: string): void {
  if (sig.keyType !== ED25519 || sig.signatureAlgorithm !== ED25519) {
    throw uncheckable(`it is made with a ${sig.signatureAlgorithm} key; only ${ED25519} is supported`);
  }
  if (!HASHES[sig.hashAlgorithm]) throw uncheckable(`its hash algorithm ${sig.hashAlgorithm} is not sha256 or sha512`);
  if (sig.signature.length !== 64) throw uncheckable(`an ${ED25519} signature holds 64 bytes, this one ${sig.signature.length}`);
  if (sig.namespace !== namespace) throw mismatch(`its namespace is "${sig.namespace}", not "${namespace}"`);
  if (!verify(null, sshSignedData(sig, message), publicKey, sig.signature)) throw mismatch('the signature does not match the signed bytes');
}

function mismatch(problem: string): CascadeError {
  return new CascadeError('sshsig-mismatch', problem, { problem });
}

function uncheckable(problem: string): CascadeError {
  return new CascadeError('sshsig-invalid', problem, { problem });
}

/** An SSH wire `string`: uint32 length, then the bytes. */
export function sshString(bytes: Uint8Array): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function invalid(what: string): CascadeError {
  return new CascadeError('sshsig-invalid', `the SSH signature cannot be read: ${what}.`);
}

/** Reads the SSH wire format (RFC 4251 uint32 and string), failing on truncation. */
class WireReader {
  private offset = 0;
  constructor(private readonly buf: Buffer) {}

  bytes(n: number): Buffer {
    if (this.offset + n > this.buf.length) throw new Error('it is truncated');
    const out = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  uint32(): number {
    return this.bytes(4).readUInt32BE(0);
  }

  string(): Buffer {
    return this.bytes(this.uint32());
  }

  done(): boolean {
    return this.offset === this.buf.length;
  }
}
