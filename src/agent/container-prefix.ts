import { CascadeError } from '../core/errors.js';

/**
 * Containers are named `<prefix>-<app>-<version>`: the prefix is checked when the agent starts, before
 * the container runtime is loaded (on the first container App).
 */
export function checkContainerPrefix(prefix: string): void {
  if (!/^[a-z0-9][a-z0-9_.-]{0,40}$/.test(prefix)) throw new CascadeError('container-prefix-invalid', `container name prefix "${prefix}": use lowercase letters, digits, _.-`);
}
