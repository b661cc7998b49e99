import { describe, expect, it } from 'vitest';
import { buildPlan } from '../../src/plan/diff.js';
import { planJsonChunks, planToJson, renderPlanJson } from '../../src/plan/render-json.js';
import { renderPlanMarkdown } from '../../src/plan/render-markdown.js';
import { renderPlanText } from '../../src/plan/render-text.js';
import { summarizePlan } from '../../src/plan/plan-summary.js';
import type { Plan } from '../../src/plan/types.js';
import { deployment, device, makeFleet } from './fleet-fixture.js';
import { expectGolden } from './golden.js';
import { sampleFleet, sampleInventory } from './sample-plan.js';

const plan = buildPlan(sampleFleet, sampleInventory);

describe('plan renderings', () => {
  it('the sample covers every action, several waves and a conflict', () => {
    const actions = new Set(plan.steps.map((s) => s.action));
    expect([...actions].sort()).toEqual(['downgrade', 'install', 'remove', 'upgrade']);
    expect(new Set(plan.steps.map((s) => s.wave)).size).toBeGreaterThan(2);
    expect(plan.conflicts).toHaveLength(1);
  });

  it('renders text as in test/fixtures/plan/sample.golden.txt', () => {
    expectGolden('sample.golden.txt', renderPlanText(plan));
  });

  it('renders markdown as in test/fixtures/plan/sample.golden.md, capping long device lists', () => {
    expectGolden('sample.golden.md', renderPlanMarkdown(plan, { maxStepsPerDeployment: 5 }));
  });

  it('renders an empty plan in every format', () => {
    const empty: Plan = { revision: null, steps: [], conflicts: [] };
    expectGolden('empty.golden.txt', renderPlanText(empty));
    expectGolden('empty.golden.md', renderPlanMarkdown(empty));
    expect(JSON.parse(renderPlanJson(empty))).toEqual({ revision: null, steps: [], conflicts: [] });
  });

  it('renders JSON with exactly the documented fields, in plan order', () => {
    const json = JSON.parse(renderPlanJson(plan));
    expect(Object.keys(json)).toEqual(['revision', 'steps', 'conflicts']);
    expect(json.revision).toBe('3f2a9c1');
    expect(json.steps).toHaveLength(plan.steps.length);
    for (const step of json.steps) {
      expect(Object.keys(step)).toEqual(['device', 'app', 'from', 'to', 'action', 'deployment', 'wave', 'region', 'reason']);
    }
    expect(json.steps.map((s: { device: string; app: string }) => `${s.device}/${s.app}`)).toEqual(plan.steps.map((s) => `${s.device}/${s.app}`));
    expect(json.conflicts[0]).toEqual({
      device: 'paris-03',
      app: 'agent',
      deployments: ['agent-beta', 'agent-rpi'],
      priority: 0,
      message: plan.conflicts[0]!.message,
    });
    expect(json).toEqual(planToJson(plan));
  });

  it('writes JSON byte for byte as JSON.stringify of planToJson, one step per line, in pieces of any size', () => {
    // renderPlanJson (and `cascade plan --json`, which writes planJsonChunks' pieces) spells each step out
    // field by field instead of building an object per step for JSON.stringify.
    const reference = (p: Plan) => {
      const json = planToJson(p);
      const list = (items: unknown[]) => (items.length === 0 ? '[]' : `[\n${items.map((item) => `    ${JSON.stringify(item)}`).join(',\n')}\n  ]`);
      return `{\n  "revision": ${JSON.stringify(json.revision)},\n  "steps": ${list(json.steps)},\n  "conflicts": ${list(json.conflicts)}\n}\n`;
    };
    const odd: Plan = {
      revision: 'r"1',
      steps: [
        ...plan.steps,
        { ...plan.steps[0]!, device: 'd\u00e9v "q"\\\n\u2028\ud800', reason: 'tab\there <script>' },
        { ...plan.steps[0]!, wave: Number.NaN }, // not an integer: goes through JSON.stringify (null)
        { ...plan.steps[0]!, from: undefined as unknown as null }, // a field left out, as JSON.stringify leaves it
      ],
      conflicts: plan.conflicts,
    };
    for (const p of [plan, odd, { revision: null, steps: [], conflicts: [] }, { ...plan, conflicts: [] }]) {
      const expected = reference(p);
      expect(renderPlanJson(p)).toBe(expected);
      for (const size of [1, 7, 300]) {
        const chunks = [...planJsonChunks(p, size)];
        expect(chunks.join('')).toBe(expected);
        if (p.steps.length > 2) expect(chunks.length).toBeGreaterThan(2);
      }
    }
  });

  it('escapes Markdown and HTML in names so a device id cannot break the comment', () => {
    const f = makeFleet({ revision: 'r', deployments: [deployment('web', 'web', '1.0.0')] });
    const md = renderPlanMarkdown(buildPlan(f, [device('a|b<script>*x*', 'eu', {}, { web: '0.9' })]));
    expect(md).toContain('| a\\|b&lt;script&gt;\\*x\\* | eu |');
    expect(md).not.toContain('<script>');
  });
});

describe('summarizePlan', () => {
  it('counts steps and distinct devices per region, Deployment and wave', () => {
    const summary = summarizePlan(plan);
    expect(summary.steps).toBe(plan.steps.length);
    expect(summary.devices).toBe(new Set(plan.steps.map((s) => s.device)).size);
    const webEu = summary.deployments.find((d) => d.deployment === 'web-eu')!;
    const webEuSteps = plan.steps.filter((s) => s.deployment === 'web-eu');
    expect(webEu.steps).toBe(webEuSteps.length);
    expect(webEu.to).toBe('2.1.0');
    expect(webEu.waves.reduce((n, w) => n + w.steps, 0)).toBe(webEuSteps.length);
    for (const w of webEu.waves) expect(w.steps).toBe(webEuSteps.filter((s) => s.wave === w.wave).length);
    expect(summary.deployments.at(-1)!.deployment).toBeNull();
    const euWest = summary.regions.find((r) => r.region === 'eu-west')!;
    expect(euWest.devices).toBe(new Set(plan.steps.filter((s) => s.region === 'eu-west').map((s) => s.device)).size);
    expect(summary.conflicts).toBe(1);
  });
});
