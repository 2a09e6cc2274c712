/**
 * The JSON shapes of the nb2pipe server extension (jupyter_extension/REST.md).
 * Pure declarations: no JupyterLab imports, so unit tests can use them.
 */

export interface IProblem {
  severity: 'error' | 'warning';
  message: string;
  fix: string | null;
  code: string;
  /** 1-based position in the notebook's cells (REST.md). */
  cell_index: number | null;
  cell_id: string | null;
  line: number | null;
}

export type ParamType =
  | 'int'
  | 'float'
  | 'str'
  | 'bool'
  | 'list'
  | 'dict'
  | 'NoneType'
  | null;

export interface IParam {
  name: string;
  type: ParamType;
  default: any;
  cell_index: number | null;
}

export interface IStepOptions {
  image?: string | null;
  cpu?: any;
  memory?: any;
  gpu?: any;
  retries?: number | null;
  timeout?: number | null;
  cache?: boolean | null;
}

export interface IStep {
  name: string;
  kfp_name: string;
  cells: { index: number; id: string | null }[];
  inputs: { name: string; producer: string }[];
  outputs: string[];
  after: string[];
  options: IStepOptions;
  metrics: boolean;
}

export interface IEdge {
  from: string;
  to: string;
  names: string[];
}

export interface ISpec {
  steps: IStep[];
  edges: IEdge[];
  parameters: IParam[];
}

export type CellRole =
  | 'step'
  | 'code'
  | 'setup'
  | 'skip'
  | 'parameters'
  | 'metrics'
  | 'markdown'
  | 'raw';

export interface ICellInfo {
  /** 1-based */
  index: number;
  id: string | null;
  step: string | null;
  role: CellRole;
  tags: string[];
  meaning: string[];
}

export interface IPlanStep {
  step: string;
  action: 'run' | 'cached';
  reason: string;
}

export interface IPipelineResponse {
  path: string;
  spec: ISpec | null;
  cells: ICellInfo[];
  problems: IProblem[];
  plan: IPlanStep[] | null;
}

export interface IConfig {
  kfp_host: boolean;
  executors: string[];
  executor: string;
  workers: number;
}

export interface IRunStepSummary {
  name: string;
  status: string;
  cached: boolean;
  duration: number | null;
}

export interface IMetric {
  name: string;
  value: any;
  flag?: string | null;
}

export interface IRunSummary {
  id: string;
  status: string;
  notebook: string;
  started: number | null;
  ended: number | null;
  duration: number | null;
  parameters: { [k: string]: any };
  metrics: IMetric[] | { [k: string]: any };
  note: string | null;
  tags: string[];
  steps: IRunStepSummary[];
  live: boolean;
}

export interface IArtifactRef {
  name: string;
  sha256: string;
  size: number;
  serializer: string;
  type_name: string;
  producer_step: string | null;
  run_id: string | null;
}

export interface IStepError {
  reason: string;
  message: string;
  /** 1-based, as in the CLI's diagnostics. */
  cell_index: number | null;
  cell_id: string | null;
  line: number | null;
  ename: string | null;
  evalue: string | null;
  traceback: string[];
}

export interface IStepRecord {
  name: string;
  status: string;
  started: number | null;
  ended: number | null;
  duration: number | null;
  cached: boolean;
  attempts: number;
  parameters?: { [k: string]: any };
  inputs: IArtifactRef[];
  outputs: IArtifactRef[];
  error: IStepError | null;
  output_notebook?: string | null;
  cached_from?: string | null;
  metrics?: IMetric[];
}

export interface IRunRecord {
  id: string;
  notebook: string;
  status: string;
  reason?: string | null;
  started: number | null;
  ended: number | null;
  parameters: { [k: string]: any };
  metrics: IMetric[];
  steps: IStepRecord[];
  note?: string | null;
  tags?: string[];
  live?: boolean;
  current?: { [step: string]: { cell_index: number | null; cells: number | null } };
}

export interface ILogChunk {
  text: string;
  offset: number;
  done: boolean;
}

/** One event of https://events.nb2pipe.dev/run/v1 (the `data` part). */
export interface IRunEvent {
  run_id: string;
  path: string;
  type: 'run' | 'step' | 'cell' | string;
  status: string | null;
  step: string | null;
  attempt: number | null;
  duration: number | null;
  cached: boolean | null;
  cell_index: number | null;
  cells: number | null;
  source_cell: number | null;
  message: string | null;
}

export const EVENT_SCHEMA_ID = 'https://events.nb2pipe.dev/run/v1';
