/**
 * The pipeline graph the panel draws: nodes and edges built from the server's spec, with a
 * status per node merged from the plan, run records, run summaries and live events.
 * Pure (no JupyterLab imports); the layout uses dagre.
 */
import * as dagre from '@dagrejs/dagre';

import {
  IPlanStep,
  IRunEvent,
  IRunRecord,
  IRunSummary,
  ISpec,
  IStep,
  IStepRecord
} from './types';

export type NodeStatus =
  | 'idle'
  | 'would-run'
  | 'queued'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'cached'
  | 'skipped'
  | 'cancelled';

export const STATUSES: NodeStatus[] = [
  'idle',
  'would-run',
  'queued',
  'running',
  'succeeded',
  'failed',
  'cached',
  'skipped',
  'cancelled'
];

export const FINAL_RUN_STATUSES = ['succeeded', 'failed', 'cancelled', 'crashed', 'damaged'];

export interface IGraphNode {
  name: string;
  step: IStep;
  status: NodeStatus;
  duration: number | null;
  /** Why the plan runs it (or reuses it). */
  reason: string | null;
  attempt: number | null;
  /** Progress while running: cell i of n. */
  cell: number | null;
  cells: number | null;
}

export interface IGraphEdge {
  from: string;
  to: string;
  names: string[];
}

export interface IGraph {
  nodes: IGraphNode[];
  edges: IGraphEdge[];
}

export function buildGraph(spec: ISpec | null): IGraph {
  if (!spec) {
    return { nodes: [], edges: [] };
  }
  const nodes: IGraphNode[] = spec.steps.map(step => ({
    name: step.name,
    step,
    status: 'idle',
    duration: null,
    reason: null,
    attempt: null,
    cell: null,
    cells: null
  }));
  const known = new Set(nodes.map(n => n.name));
  const edges: IGraphEdge[] = [];
  const seen = new Map<string, IGraphEdge>();
  const add = (from: string, to: string, names: string[]) => {
    if (!known.has(from) || !known.has(to) || from === to) {
      return;
    }
    const key = `${from}\u0000${to}`;
    const e = seen.get(key);
    if (e) {
      for (const n of names) {
        if (!e.names.includes(n)) {
          e.names.push(n);
        }
      }
      return;
    }
    const edge = { from, to, names: [...names] };
    seen.set(key, edge);
    edges.push(edge);
  };
  for (const e of spec.edges) {
    add(e.from, e.to, e.names || []);
  }
  // after: dependencies are edges too (the server usually lists them already)
  for (const s of spec.steps) {
    for (const a of s.after || []) {
      add(a, s.name, []);
    }
  }
  return { nodes, edges };
}

function node(graph: IGraph, name: string | null): IGraphNode | undefined {
  return name === null ? undefined : graph.nodes.find(n => n.name === name);
}

/** All nodes back to idle (a new spec or a new run). */
export function resetStatuses(graph: IGraph): IGraph {
  for (const n of graph.nodes) {
    n.status = 'idle';
    n.duration = null;
    n.reason = null;
    n.attempt = null;
    n.cell = null;
    n.cells = null;
  }
  return graph;
}

/** Before a run: what would run (`would-run`) and what is reused (`cached`), and why. */
export function applyPlan(graph: IGraph, plan: IPlanStep[] | null): IGraph {
  resetStatuses(graph);
  for (const p of plan || []) {
    const n = node(graph, p.step);
    if (n) {
      n.status = p.action === 'cached' ? 'cached' : 'would-run';
      n.reason = p.reason;
    }
  }
  return graph;
}

/** A step status as the store or an event spells it -> a node status. */
export function nodeStatus(
  stepStatus: string | null | undefined,
  opts: { cached?: boolean | null; live?: boolean; runStatus?: string; errorReason?: string } = {}
): NodeStatus {
  const s = (stepStatus || '').toLowerCase();
  if (opts.errorReason === 'cancelled' && s !== 'succeeded' && s !== 'cached') {
    return 'cancelled';
  }
  switch (s) {
    case 'pending':
    case 'queued':
      if (opts.live === false || (opts.runStatus && FINAL_RUN_STATUSES.includes(opts.runStatus))) {
        return opts.runStatus === 'cancelled' ? 'cancelled' : 'skipped';
      }
      return 'queued';
    case 'running':
      if (opts.live === false && opts.runStatus && FINAL_RUN_STATUSES.includes(opts.runStatus)) {
        return opts.runStatus === 'cancelled' ? 'cancelled' : 'failed';
      }
      return 'running';
    case 'succeeded':
      return opts.cached ? 'cached' : 'succeeded';
    case 'failed':
    case 'crashed':
      return 'failed';
    case 'cached':
      return 'cached';
    case 'skipped':
      return 'skipped';
    case 'cancelled':
      return 'cancelled';
    default:
      return 'idle';
  }
}

/** Merge a full run record (GET runs/{id}). */
export function applyRecord(graph: IGraph, record: IRunRecord): IGraph {
  resetStatuses(graph);
  const live = record.live !== false && !FINAL_RUN_STATUSES.includes(record.status);
  for (const s of record.steps || []) {
    const n = node(graph, s.name);
    if (!n) {
      continue;
    }
    n.status = nodeStatus(s.status, {
      cached: s.cached,
      live,
      runStatus: record.status,
      errorReason: s.error?.reason
    });
    n.duration = s.duration ?? null;
    n.attempt = s.attempts || null;
    const cur = record.current?.[s.name];
    if (cur && n.status === 'running') {
      n.cell = cur.cell_index ?? null;
      n.cells = cur.cells ?? null;
    }
  }
  return graph;
}

/** Merge a run summary (GET runs?path=), e.g. a history row. */
export function applySummary(graph: IGraph, run: IRunSummary): IGraph {
  resetStatuses(graph);
  for (const s of run.steps || []) {
    const n = node(graph, s.name);
    if (n) {
      n.status = nodeStatus(s.status, {
        cached: s.cached,
        live: run.live !== false && !FINAL_RUN_STATUSES.includes(run.status),
        runStatus: run.status
      });
      n.duration = s.duration ?? null;
    }
  }
  return graph;
}

/**
 * Merge one live event. Returns true when it changed something the view shows.
 * A `run` start event resets every node to queued; `step` events set their node; `cell`
 * events set progress.
 */
export function applyEvent(graph: IGraph, ev: IRunEvent): boolean {
  if (ev.type === 'run') {
    if (ev.status === 'running') {
      for (const n of graph.nodes) {
        if (n.status === 'idle' || n.status === 'would-run' || n.status === 'cached') {
          n.status = 'queued';
          n.duration = null;
          n.cell = null;
          n.cells = null;
        }
      }
      return true;
    }
    if (ev.status && FINAL_RUN_STATUSES.includes(ev.status)) {
      let changed = false;
      for (const n of graph.nodes) {
        if (n.status === 'queued' || n.status === 'running') {
          n.status = ev.status === 'cancelled' ? 'cancelled' : n.status === 'running' ? 'failed' : 'skipped';
          changed = true;
        }
      }
      return changed;
    }
    return false;
  }
  const n = node(graph, ev.step);
  if (!n) {
    return false;
  }
  if (ev.type === 'step') {
    n.status = nodeStatus(ev.status, { cached: ev.cached });
    if (ev.duration !== null && ev.duration !== undefined) {
      n.duration = ev.duration;
    }
    if (ev.attempt) {
      n.attempt = ev.attempt;
    }
    if (n.status !== 'running') {
      n.cell = null;
      n.cells = null;
    }
    return true;
  }
  if (ev.type === 'cell') {
    if (n.status === 'queued' || n.status === 'idle') {
      n.status = 'running';
    }
    n.cell = ev.cell_index ?? null;
    n.cells = ev.cells ?? null;
    return true;
  }
  return false;
}

export function stepRecord(record: IRunRecord | null, name: string): IStepRecord | undefined {
  return record?.steps?.find(s => s.name === name);
}

/** Steps downstream of `name` (itself included), in spec order. */
export function downstream(graph: IGraph, name: string): string[] {
  const out = new Set<string>([name]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const e of graph.edges) {
      if (out.has(e.from) && !out.has(e.to)) {
        out.add(e.to);
        grew = true;
      }
    }
  }
  return graph.nodes.map(n => n.name).filter(n => out.has(n));
}

export interface ILayoutNode {
  name: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface ILayoutEdge {
  from: string;
  to: string;
  names: string[];
  points: { x: number; y: number }[];
}

export interface ILayout {
  width: number;
  height: number;
  nodes: ILayoutNode[];
  edges: ILayoutEdge[];
}

/** Lay the graph out top to bottom with dagre (x, y are node centres). */
export function layoutGraph(
  graph: IGraph,
  size: { width: number; height: number } = { width: 150, height: 44 }
): ILayout {
  const g = new dagre.graphlib.Graph({ multigraph: false });
  g.setGraph({ rankdir: 'TB', nodesep: 24, ranksep: 36, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of graph.nodes) {
    g.setNode(n.name, { label: n.name, width: size.width, height: size.height });
  }
  for (const e of graph.edges) {
    g.setEdge(e.from, e.to);
  }
  dagre.layout(g);
  const info = g.graph() as { width?: number; height?: number };
  const nodes = graph.nodes.map(n => {
    const d = g.node(n.name) as any;
    return { name: n.name, x: d.x, y: d.y, width: d.width, height: d.height };
  });
  const edges = graph.edges.map(e => {
    const d = g.edge(e.from, e.to) as any;
    return { from: e.from, to: e.to, names: e.names, points: (d && d.points) || [] };
  });
  return {
    width: Math.max(info.width || 0, size.width + 16),
    height: Math.max(info.height || 0, size.height + 16),
    nodes,
    edges
  };
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  }
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds - m * 60);
  if (m < 60) {
    return `${m} min ${s} s`;
  }
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function formatSize(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !isFinite(bytes)) {
    return '';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** Metrics as a name -> value map, whichever of the two shapes the server sent. */
export function metricsMap(metrics: any): { [k: string]: any } {
  if (!metrics) {
    return {};
  }
  if (Array.isArray(metrics)) {
    const out: { [k: string]: any } = {};
    for (const m of metrics) {
      if (m && typeof m === 'object' && 'name' in m) {
        out[m.name] = m.flag ? m.flag : m.value;
      }
    }
    return out;
  }
  return { ...metrics };
}

/** Side-by-side comparison of two runs. */
export interface ICompareRow {
  key: string;
  a: string;
  b: string;
  differs: boolean;
}

function show(v: any): string {
  if (v === undefined) {
    return '—';
  }
  if (typeof v === 'string') {
    return v;
  }
  return JSON.stringify(v);
}

export function compareRuns(
  a: IRunSummary,
  b: IRunSummary
): { parameters: ICompareRow[]; metrics: ICompareRow[]; steps: ICompareRow[] } {
  const rows = (x: { [k: string]: any }, y: { [k: string]: any }) => {
    const keys = Array.from(new Set([...Object.keys(x), ...Object.keys(y)])).sort();
    return keys.map(k => {
      const sa = show(x[k]);
      const sb = show(y[k]);
      return { key: k, a: sa, b: sb, differs: sa !== sb };
    });
  };
  const stepText = (s: IRunSummary['steps'][0] | undefined) =>
    s ? `${s.cached ? 'cached' : s.status}${s.duration !== null && s.duration !== undefined ? ' · ' + formatDuration(s.duration) : ''}` : '—';
  const names: string[] = [];
  for (const s of [...(a.steps || []), ...(b.steps || [])]) {
    if (!names.includes(s.name)) {
      names.push(s.name);
    }
  }
  const steps = names.map(n => {
    const sa = (a.steps || []).find(s => s.name === n);
    const sb = (b.steps || []).find(s => s.name === n);
    const ta = stepText(sa);
    const tb = stepText(sb);
    const differs =
      (sa?.status ?? '') !== (sb?.status ?? '') || (sa?.cached ?? false) !== (sb?.cached ?? false);
    return { key: n, a: ta, b: tb, differs };
  });
  return {
    parameters: rows(a.parameters || {}, b.parameters || {}),
    metrics: rows(metricsMap(a.metrics), metricsMap(b.metrics)),
    steps
  };
}

/** Parse one parameter form value by its declared type; throws Error with a message. */
export function parseParamValue(type: string | null, text: string, checked?: boolean): any {
  switch (type) {
    case 'bool':
      return !!checked;
    case 'int': {
      const t = text.trim();
      if (!/^[-+]?\d+$/.test(t)) {
        throw new Error('a whole number');
      }
      return parseInt(t, 10);
    }
    case 'float': {
      const v = Number(text.trim());
      if (text.trim() === '' || !isFinite(v)) {
        throw new Error('a number');
      }
      return v;
    }
    case 'list':
    case 'dict': {
      let v: any;
      try {
        v = JSON.parse(text);
      } catch {
        throw new Error(`JSON ${type === 'list' ? 'array' : 'object'}`);
      }
      if (type === 'list' ? !Array.isArray(v) : v === null || typeof v !== 'object' || Array.isArray(v)) {
        throw new Error(`JSON ${type === 'list' ? 'array' : 'object'}`);
      }
      return v;
    }
    case 'NoneType': {
      const t = text.trim();
      if (t === '' || t === 'None' || t === 'null') {
        return null;
      }
      try {
        return JSON.parse(t);
      } catch {
        return t;
      }
    }
    default:
      return text;
  }
}
