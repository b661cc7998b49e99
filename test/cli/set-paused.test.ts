import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { setPaused } from '../../src/cli/rollout/set-paused.js';

const FILE = `# Deployments of the web app
apiVersion: cascade/v1
kind: App
metadata: {name: web}
spec: {}
---
# the web deployment
apiVersion: cascade/v1
kind: Deployment
metadata:
  name: web   # main site
spec:
  app: web
  version: "2.0"  # pinned
  rollout:
    waves: [10, 100]   # canary first
    bakeTime: 10m
  # trailing comment of spec
---
kind: Deployment
metadata: {name: flow}
spec: {app: a, version: "1"}
---
kind: Deployment
metadata:
  name: bare
spec:
  app: b
  version: '3'
`;

const docsOf = (text: string) => YAML.parseAllDocuments(text).map((d) => d.toJS());

describe('setPaused: one line added or removed, every other byte kept', () => {
  it('adds paused: true under an existing block rollout, and removes exactly that line again', () => {
    const paused = setPaused(FILE, 'web', true)!;
    expect(paused).toBe(FILE.replace('    bakeTime: 10m\n', '    bakeTime: 10m\n    paused: true\n'));
    expect(setPaused(paused, 'web', true)).toBeNull();
    expect(setPaused(paused, 'web', false)).toBe(FILE);
    expect(setPaused(FILE, 'web', false)).toBeNull();
  });

  it('adds a rollout block when there is none, and removes the block it emptied', () => {
    const paused = setPaused(FILE, 'bare', true)!;
    expect(paused).toBe(FILE.replace("  version: '3'\n", "  version: '3'\n  rollout:\n    paused: true\n"));
    expect(setPaused(paused, 'bare', false)).toBe(FILE);
  });

  it('re-prints only a flow-style document, keeping the others byte for byte', () => {
    const paused = setPaused(FILE, 'flow', true)!;
    const [before, after] = [docsOf(FILE), docsOf(paused)];
    expect(after[2].spec.rollout).toEqual({ paused: true });
    expect(after[0]).toEqual(before[0]);
    expect(after[1]).toEqual(before[1]);
    expect(after[3]).toEqual(before[3]);
    expect(paused.startsWith(FILE.slice(0, FILE.indexOf('kind: Deployment\nmetadata: {name: flow}')))).toBe(true);
    expect(paused.endsWith(FILE.slice(FILE.indexOf('---\nkind: Deployment\nmetadata:\n  name: bare')))).toBe(true);
    expect(docsOf(setPaused(paused, 'flow', false)!)[2]).toEqual(before[2]);
  });

  it('turns paused: false into true in place, and refuses an unknown Deployment', () => {
    const text = FILE.replace('    bakeTime: 10m\n', '    paused: false # not yet\n    bakeTime: 10m\n');
    expect(setPaused(text, 'web', true)).toBe(text.replace('paused: false', 'paused: true'));
    expect(() => setPaused(FILE, 'nope', true)).toThrow(/no Deployment named "nope"/);
  });

  it('a name that is also a key elsewhere (hostile values) changes only the right document', () => {
    const text = `kind: Deployment\nmetadata: {name: "web\\nspec: x"}\nspec:\n  app: a\n  version: "1"\n---\n${FILE}`;
    const out = setPaused(text, 'web\nspec: x', true)!;
    expect(docsOf(out)[0].spec.rollout).toEqual({ paused: true });
    expect(docsOf(out).slice(1)).toEqual(docsOf(text).slice(1));
  });
});
