/**
 * What a fleet repository may send to devices besides versions: artifact URLs and App commands.
 * Called from checkFleet, so `cascade validate`, `cascade plan` and the region's load of every
 * revision refuse the same things with the same `path:line:col` messages.
 *
 * - Artifact URLs follow core/artifact-url.ts: https: by default; never file:, data: or other
 *   schemes; never loopback, link-local or unspecified hosts, unless an allowed origin names them.
 * - http: is accepted for an App with `spec.allowHttpArtifacts: true`, under an allowed origin, with
 *   the `allowHttp` flag, or for a version whose every Deployment selects only regions listed by name
 *   (`spec.selector.regions`) whose Region documents say `spec.allowHttpArtifacts: true`.
 * - Command templates must be safe to fill in (core/command-template.ts).
 */
import { artifactUrlProblem, isAllowedOrigin, type ArtifactUrlPolicy } from '../core/artifact-url.js';
import type { CommandTemplate } from '../core/app-spec.js';
import { commandTemplateProblem } from '../core/command-template.js';
import type { CheckedDoc, CheckProblem } from './check-types.js';
import type { AppDoc, DeploymentDoc, RegionDoc } from './model.js';
import { escapePointer } from './parse-yaml.js';

export type { ArtifactUrlPolicy } from '../core/artifact-url.js';

export function artifactAndCommandProblems(valid: readonly CheckedDoc[], policy: ArtifactUrlPolicy = {}): CheckProblem[] {
  const problems: CheckProblem[] = [];
  const regions = new Map<string, RegionDoc>();
  const deployments: Array<CheckedDoc & { doc: DeploymentDoc }> = [];
  /** `${app}\0${version}` -> URL of http: artifacts that need a region's permission. */
  const needsPermission = new Map<string, string>();

  for (const checked of valid) {
    const { doc } = checked;
    if (doc.kind === 'Region') regions.set(doc.metadata.name, doc);
    else if (doc.kind === 'Deployment') deployments.push(checked as CheckedDoc & { doc: DeploymentDoc });
    if (doc.kind !== 'App') continue;
    const app = doc as AppDoc;
    const problem = (code: string, pointer: string, message: string) =>
      problems.push({ code, path: checked.source.path, index: checked.source.index, pointer, at: 'value', message });

    for (const [version, artifact] of Object.entries(app.spec.artifacts ?? {})) {
      if (!('url' in artifact)) continue;
      const pointer = `/spec/artifacts/${escapePointer(version)}/url`;
      // Scheme and host first; whether http: is allowed depends on where the version is deployed.
      const refused = artifactUrlProblem(artifact.url, { ...policy, allowHttp: true });
      if (refused) {
        problem('artifact-url-refused', pointer, `App "${app.metadata.name}" artifact of version "${version}": ${refused}`);
        continue;
      }
      const url = new URL(artifact.url);
      if (url.protocol === 'http:' && !policy.allowHttp && !app.spec.allowHttpArtifacts && !isAllowedOrigin(url, policy.allowOrigins)) {
        needsPermission.set(`${app.metadata.name}\u0000${version}`, artifact.url);
      }
    }

    const runtime = app.spec.runtime;
    const commands: Array<[string, CommandTemplate | undefined]> = [];
    if (runtime?.type === 'exec') commands.push(['/spec/runtime/install', runtime.install], ['/spec/runtime/start', runtime.start], ['/spec/runtime/stop', runtime.stop]);
    commands.push(['/spec/healthCheck/exec', app.spec.healthCheck?.exec]);
    for (const [pointer, template] of commands) {
      if (template === undefined) continue;
      const refused = commandTemplateProblem(template);
      if (refused) problem('command-template-unsafe', pointer, `App "${app.metadata.name}" ${pointer.slice(6).replace(/\//g, '.')}: ${refused}`);
    }
  }

  for (const { doc, source } of deployments) {
    const url = needsPermission.get(`${doc.spec.app}\u0000${doc.spec.version}`);
    if (url === undefined) continue;
    const selected = doc.spec.selector?.regions ?? [];
    const denying = selected.filter((name) => !regions.get(name)?.spec.allowHttpArtifacts);
    if (selected.length > 0 && denying.length === 0) continue;
    const where =
      selected.length === 0
        ? 'it selects devices in every region'
        : `region${denying.length === 1 ? '' : 's'} ${denying.map((r) => `"${r}"`).join(', ')} ${denying.length === 1 ? 'does' : 'do'} not set spec.allowHttpArtifacts: true`;
    problems.push({
      code: 'artifact-url-refused',
      path: source.path,
      index: source.index,
      pointer: '/spec/version',
      at: 'value',
      message:
        `Deployment "${doc.metadata.name}" hands out ${doc.spec.app} ${doc.spec.version}, whose artifact ${url} is plain http:, and ${where}; ` +
        `use https:, or allow http: with App "${doc.spec.app}" spec.allowHttpArtifacts, with Region spec.allowHttpArtifacts on every region the Deployment selects (spec.selector.regions), or with --allow-artifact-origin ${new URL(url).origin}/`,
    });
  }
  return problems;
}
