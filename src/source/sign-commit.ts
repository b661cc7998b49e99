import * as openpgp from 'openpgp';
import { CascadeError } from '../core/errors.js';

/** What revertCommit (and isomorphic-git's commit) needs to sign a commit. */
export interface CommitSigner {
  signingKey: string;
  onSign: (args: { payload: string; secretKey: string }) => Promise<{ signature: string }>;
}

/**
 * An OpenPGP commit signer from an armored private key (unencrypted, or with its passphrase): a
 * detached binary-mode signature over the commit, as `git commit -S` writes it, so verifyCommit and
 * `git verify-commit` accept it. The key is read once, here, so a bad file fails at start.
 */
export async function openPgpSigner(armoredKey: string, passphrase?: string): Promise<CommitSigner & { fingerprint: string }> {
  let key: openpgp.PrivateKey;
  try {
    key = await openpgp.readPrivateKey({ armoredKey });
    if (!key.isDecrypted()) {
      if (!passphrase) throw new Error('the key is protected by a passphrase');
      key = await openpgp.decryptKey({ privateKey: key, passphrase });
    }
  } catch (err) {
    throw new CascadeError('signing-key-invalid', `cannot use the signing key: ${(err as Error).message}; give an armored OpenPGP private key (gpg --export-secret-keys --armor KEYID)`);
  }
  const signingKey = key;
  return {
    signingKey: armoredKey,
    fingerprint: signingKey.getFingerprint().toUpperCase(),
    onSign: async ({ payload }) => {
      const message = await openpgp.createMessage({ binary: new TextEncoder().encode(payload) });
      const signature = await openpgp.sign({ message, signingKeys: signingKey, detached: true, format: 'armored' });
      return { signature: signature as string };
    },
  };
}
