import { gitBlobId, type FleetFile, type FleetSnapshot } from '../../src/source/snapshot.js';

/** A snapshot of files held in memory; counts reads so tests can tell what the loader touched. */
export function memorySnapshot(
  contents: Record<string, string | Uint8Array>,
  revision: string | null = null,
): FleetSnapshot & { reads: string[] } {
  const reads: string[] = [];
  const files: FleetFile[] = Object.keys(contents)
    .sort()
    .map((path) => {
      const raw = contents[path]!;
      const bytes = typeof raw === 'string' ? new TextEncoder().encode(raw) : raw;
      return {
        path,
        id: gitBlobId(bytes),
        size: bytes.byteLength,
        read: async () => {
          reads.push(path);
          return bytes;
        },
      };
    });
  return { revision, files, reads };
}

export const APP = (name: string, extra = '') => `apiVersion: cascade/v1
kind: App
metadata:
  name: ${name}
${extra}`;

export const DEPLOYMENT = (name: string, app: string, version: string, extra = '') => `apiVersion: cascade/v1
kind: Deployment
metadata:
  name: ${name}
spec:
  app: ${app}
  version: "${version}"
${extra}`;

export const REGION = (name: string) => `apiVersion: cascade/v1
kind: Region
metadata:
  name: ${name}
`;
