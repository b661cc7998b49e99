import type { ContainerRegionPolicy, ContainerRuntime } from './app-spec.js';

/**
 * The rule for what a container app may do on a device, shared by `cascade validate` and the agent:
 * - `privileged` runs only when the App opts in (runtime.privileged) and the Region allows it
 *   (spec.containers.allowPrivileged);
 * - a host path is mounted when it lies under one of the Region's `hostPaths`, or when the App opts in
 *   (runtime.anyHostPath) and the Region allows it (spec.containers.allowAnyHostPath);
 * - named volumes and devices under /dev need no permission.
 * Returns one sentence per refusal (empty: allowed). Pure: the agent checks resolved paths itself.
 */
export function containerPolicyRefusals(runtime: ContainerRuntime, policy: ContainerRegionPolicy, resolve: (path: string) => string = (p) => p): string[] {
  const refusals: string[] = [];
  if (runtime.privileged && !policy.allowPrivileged) {
    refusals.push('it sets runtime.privileged, and the Region does not allow privileged containers (Region spec.containers.allowPrivileged)');
  }
  const allowList = (policy.hostPaths ?? []).map(resolve);
  for (const volume of runtime.volumes ?? []) {
    if (volume.hostPath === undefined) continue;
    const path = resolve(volume.hostPath);
    if (allowList.some((prefix) => isUnder(path, prefix))) continue;
    if (runtime.anyHostPath && policy.allowAnyHostPath) continue;
    const shown = path === volume.hostPath ? path : `${volume.hostPath} (${path} on the device)`;
    refusals.push(
      `host path ${shown} is outside the Region's allow-list (spec.containers.hostPaths: ${allowList.length ? allowList.join(', ') : 'none'})` +
        (runtime.anyHostPath ? ' and the Region does not set spec.containers.allowAnyHostPath' : '; list it there, or set runtime.anyHostPath in the App and allowAnyHostPath in the Region'),
    );
  }
  return refusals;
}

/** `path` is `prefix` or lies below it (segment-wise: /data2 is not under /data). */
export function isUnder(path: string, prefix: string): boolean {
  if (prefix === '/') return path.startsWith('/');
  const base = prefix.replace(/\/+$/, '');
  return path === base || path.startsWith(`${base}/`);
}
