import type { Labels } from '../core/types.js';
import type { AppRuntime, Artifact, ContainerRegionPolicy, HealthCheck } from '../core/app-spec.js';

export type { AppRuntime, Artifact, ContainerRegionPolicy, ContainerRuntime, ExecRuntime, FileArtifact, HealthCheck, ImageArtifact } from '../core/app-spec.js';

/** The documents of a fleet repository, as their JSON Schemas in schemas/ describe them. */
export const API_VERSION = 'cascade/v1';
export type Kind = 'App' | 'Deployment' | 'Region' | 'Fleet';
export const KINDS: readonly Kind[] = ['App', 'Deployment', 'Region', 'Fleet'];

export interface ObjectMeta {
  name: string;
  labels?: Labels;
  annotations?: Record<string, string>;
}

export interface FleetObject<K extends Kind, S> {
  apiVersion: typeof API_VERSION;
  kind: K;
  metadata: ObjectMeta;
  spec: S;
}

export interface AppSpec {
  description?: string;
  runtime?: AppRuntime;
  /** Artifact per version. */
  artifacts?: Record<string, Artifact>;
  healthCheck?: HealthCheck;
  /** Artifacts of this App may be fetched over plain http: (labs). */
  allowHttpArtifacts?: boolean;
}

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
export interface LabelSelectorRequirement {
  key: string;
  operator: SelectorOperator;
  values?: string[];
}
export interface Selector {
  regions?: string[];
  matchLabels?: Labels;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface WindowSpec {
  /** Five-field cron expression: when a window opens. */
  schedule: string;
  /** How long it stays open, e.g. `2h`. */
  duration: string;
  /** IANA time zone; UTC when absent. */
  timezone?: string;
}

export type RollbackStrategy = 'immediate' | 'waves';
export interface RollbackSpec {
  strategy?: RollbackStrategy;
  respectWindow?: boolean;
}

export interface RolloutSpec {
  /** Cumulative percentages, ascending, last one 100, e.g. [1, 10, 50, 100]. */
  waves?: number[];
  /** Count (3) or percentage ("10%"). */
  maxUnavailable?: number | string;
  /** Count (3) or percentage ("5%") of the devices attempted so far. */
  failureThreshold?: number | string;
  /** Attempts needed before a percentage failureThreshold can halt. */
  minSample?: number;
  bakeTime?: string;
  offlineAfter?: string;
  window?: WindowSpec;
  rollback?: RollbackStrategy | RollbackSpec;
  /** true: no further device is handed the version (`cascade rollout pause`); the rollout keeps its place. */
  paused?: boolean;
  /** What the region does when the rollout halts: hold (default), push a revert, or push a revert branch. */
  onHalt?: OnHalt;
}

export type OnHalt = 'hold' | 'revert' | 'revert-branch';

export interface DeploymentSpec {
  app: string;
  version: string;
  selector?: Selector;
  priority?: number;
  rollout?: RolloutSpec;
}

export interface RegionSpec {
  description?: string;
  labels?: Labels;
  rollout?: RolloutSpec;
  /** Deployments that select only regions allowing it may hand out http: artifacts (labs). */
  allowHttpArtifacts?: boolean;
  /** What container apps may do on this region's devices. */
  containers?: ContainerRegionPolicy;
}

export interface FleetSpec {
  description?: string;
  rollout?: RolloutSpec;
}

export type AppDoc = FleetObject<'App', AppSpec>;
export type DeploymentDoc = FleetObject<'Deployment', DeploymentSpec>;
export type RegionDoc = FleetObject<'Region', RegionSpec>;
export type FleetDoc = FleetObject<'Fleet', FleetSpec>;
export type AnyDoc = AppDoc | DeploymentDoc | RegionDoc | FleetDoc;

/** Where a document came from, for error messages. */
export interface DocSource {
  path: string;
  /** Index of the document within a multi-document file. */
  index: number;
  line: number;
  col: number;
}

/** A loaded, validated fleet: the input of resolve and plan. Plain data. */
export interface LoadedFleet {
  revision: string | null;
  apps: Map<string, AppDoc>;
  deployments: Map<string, DeploymentDoc>;
  regions: Map<string, RegionDoc>;
  fleet: FleetDoc | null;
  /** Keyed `${kind}/${name}`. */
  sources: Map<string, DocSource>;
}

/** One problem found in a fleet repository. */
export interface Problem {
  /** Stable code, e.g. `yaml-syntax`, `schema`, `unknown-app`, `duplicate-name`, `priority-overlap`. */
  code: string;
  path: string;
  line: number;
  col: number;
  /** JSON pointer into the document, e.g. `/spec/rollout/waves/0`; `` for the whole document. */
  pointer: string;
  /** Index of the document within its file. */
  index: number;
  message: string;
}
