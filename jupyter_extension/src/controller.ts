/**
 * One notebook's pipeline state: the server's analysis (GET pipeline), the graph with statuses,
 * the runs of the notebook and the run being watched (live events + 1 s polling).
 */
import { NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, IRunRequest, Nb2pipeApi } from './api';
import { decorateNotebook } from './decorations';
import {
  applyEvent,
  applyPlan,
  applyRecord,
  applySummary,
  buildGraph,
  FINAL_RUN_STATUSES,
  IGraph
} from './graph';
import { IPipelineResponse, IRunEvent, IRunRecord, IRunSummary } from './types';

export interface ILogBuffer {
  text: string;
  offset: number;
  done: boolean;
}

function tagsKey(panel: NotebookPanel): string {
  const model = panel.content.model;
  if (!model) {
    return '';
  }
  const out: string[] = [];
  for (let i = 0; i < model.cells.length; i++) {
    const c = model.cells.get(i);
    out.push(`${c.type}:${JSON.stringify(c.getMetadata('tags') ?? [])}`);
  }
  return out.join('|');
}

export class NotebookPipeline {
  pipeline: IPipelineResponse | null = null;
  error: string | null = null;
  graph: IGraph = { nodes: [], edges: [] };
  runs: IRunSummary[] = [];
  /** The run whose statuses are shown (a live run, or one picked in the history). */
  shownRunId: string | null = null;
  record: IRunRecord | null = null;
  /** Parameter values the user typed (name -> parsed value). */
  parameters: { [k: string]: any } = {};
  logs = new Map<string, ILogBuffer>();
  busy = false;

  private _changed = new Signal<this, string>(this);
  private _refreshTimer: number | null = null;
  private _pollTimer: number | null = null;
  private _burstTimer: number | null = null;
  private _tagsKey = '';
  private _disposed = false;
  private _pipelineSeq = 0;
  private _saving = false;
  private _refreshPending = false;

  constructor(
    readonly panel: NotebookPanel,
    readonly api: Nb2pipeApi,
    private _onBadgeClick: (p: NotebookPipeline, cellIndex: number) => void
  ) {
    const ctx = panel.context;
    void ctx.ready.then(() => {
      if (this._disposed) {
        return;
      }
      this._tagsKey = tagsKey(panel);
      ctx.model.contentChanged.connect(this._onContentChanged, this);
      ctx.fileChanged.connect(() => this.scheduleRefresh(200), this);
      // jupyter_server writes the file in place: never read it for the analysis while it is saved
      ctx.saveState.connect((_, state) => {
        this._saving = state === 'started';
        if (!this._saving && this._refreshPending) {
          this._refreshPending = false;
          this.scheduleRefresh(100);
        }
      }, this);
      panel.content.model?.cells.changed.connect(() => this.decorate(), this);
      void this.refresh();
      void this.refreshRuns(true);
    });
    ctx.pathChanged.connect(() => this.scheduleRefresh(100), this);
  }

  get path(): string {
    return this.panel.context.path;
  }

  get changed(): ISignal<this, string> {
    return this._changed;
  }

  get live(): boolean {
    return !!this.record && this.record.id === this.shownRunId && this.isLive(this.record);
  }

  /** Still going: not in a final status (the server's `live` can lag behind the status). */
  isLive(r: { status: string; live?: boolean }): boolean {
    return r.live !== false && !FINAL_RUN_STATUSES.includes(r.status);
  }

  /** Worth polling again: live by status or by the server's flag (the record may still grow). */
  private _keepPolling(r: { status: string; live?: boolean }): boolean {
    return r.live === true || !FINAL_RUN_STATUSES.includes(r.status);
  }

  dispose(): void {
    this._disposed = true;
    this._stopPolling();
    if (this._refreshTimer !== null) {
      clearTimeout(this._refreshTimer);
    }
    Signal.clearData(this);
  }

  emit(what: string): void {
    if (!this._disposed) {
      this._changed.emit(what);
    }
  }

  private _onContentChanged(): void {
    // Tags and code decide the steps and their data flow: analyse the editor's content again
    // (sent as it is, unsaved edits included; nothing is saved for it). Tag edits sooner.
    const key = tagsKey(this.panel);
    const tagsChanged = key !== this._tagsKey;
    this._tagsKey = key;
    this.decorate();
    this.scheduleRefresh(tagsChanged ? 300 : 800);
  }

  /** The notebook as the editor holds it, without outputs (the analysis reads tags and code). */
  private _content(): any | null {
    const model = this.panel.content.model;
    if (!model) {
      return null;
    }
    const nb = model.toJSON() as any;
    for (const cell of nb.cells || []) {
      if (cell.cell_type === 'code') {
        cell.outputs = [];
        cell.execution_count = null;
      }
      delete cell.attachments;
    }
    return nb;
  }

  scheduleRefresh(delay = 600, save = false): void {
    if (this._refreshTimer !== null) {
      clearTimeout(this._refreshTimer);
    }
    this._refreshTimer = window.setTimeout(async () => {
      this._refreshTimer = null;
      if (save) {
        await this.saveIfDirty();
      }
      await this.refresh();
    }, delay);
  }

  private _savePromise: Promise<void> | null = null;

  /** Save when there are unsaved changes (the server reads the notebook from disk); one save at a time. */
  async saveIfDirty(): Promise<void> {
    while (this._savePromise) {
      await this._savePromise;
    }
    const ctx = this.panel.context;
    if (ctx.isReady && ctx.model.dirty && !ctx.model.readOnly) {
      this._savePromise = ctx
        .save()
        .catch(e => console.warn('nb2pipe: could not save the notebook', e))
        .finally(() => {
          this._savePromise = null;
        });
      await this._savePromise;
    }
  }

  /** GET pipeline (POST with the editor's content when it has unsaved edits): spec, cells, problems, plan. */
  async refresh(): Promise<void> {
    if (this._disposed) {
      return;
    }
    if (this._saving) {
      this._refreshPending = true;
      return;
    }
    const seq = ++this._pipelineSeq;
    try {
      const ctx = this.panel.context;
      const content = ctx.isReady && ctx.model.dirty ? this._content() : null;
      const p = content
        ? await this.api.analyse(this.path, content, this.parameters)
        : await this.api.pipeline(this.path, this.parameters);
      if (seq !== this._pipelineSeq || this._disposed) {
        return;
      }
      this.pipeline = p;
      this.error = null;
    } catch (e) {
      if (seq !== this._pipelineSeq || this._disposed) {
        return;
      }
      this.error = e instanceof Error ? e.message : String(e);
      if (e instanceof ApiError && e.problems.length && this.pipeline) {
        this.pipeline = { ...this.pipeline, problems: e.problems };
      }
    }
    this.rebuildGraph();
    this.decorate();
    this.emit('pipeline');
  }

  /** Rebuild the graph from the spec and re-apply the shown run (or the plan). */
  rebuildGraph(): void {
    this.graph = buildGraph(this.pipeline?.spec ?? null);
    this.applyShown();
  }

  applyShown(): void {
    if (this.shownRunId && this.record && this.record.id === this.shownRunId) {
      applyRecord(this.graph, this.record);
    } else if (this.shownRunId) {
      const s = this.runs.find(r => r.id === this.shownRunId);
      if (s) {
        applySummary(this.graph, s);
      }
    } else {
      applyPlan(this.graph, this.pipeline?.plan ?? null);
    }
  }

  decorate(): void {
    if (this._disposed) {
      return;
    }
    const statusOf = (step: string) =>
      this.shownRunId ? this.graph.nodes.find(n => n.name === step)?.status ?? null : null;
    decorateNotebook(this.panel.content, this.pipeline, {
      statusOf,
      onBadgeClick: i => this._onBadgeClick(this, i)
    });
  }

  /** GET runs?path=; on first load, reattach to a live run. */
  async refreshRuns(reattach = false): Promise<void> {
    try {
      const { runs } = await this.api.runs(this.path);
      this.runs = runs || [];
    } catch (e) {
      this.runs = [];
    }
    if (reattach && !this.shownRunId) {
      const liveRun = this.runs.find(r => this.isLive(r));
      if (liveRun) {
        this.watch(liveRun.id);
        return;
      }
    }
    this.emit('runs');
  }

  /** Show the statuses of one run; poll it while it is live. */
  watch(runId: string | null): void {
    this.shownRunId = runId;
    if (!runId) {
      this.record = null;
      this._stopPolling();
      this.applyShown();
      this.decorate();
      this.emit('run');
      return;
    }
    if (this.record?.id !== runId) {
      this.record = null;
    }
    this.applyShown();
    this.emit('run');
    void this.poll();
  }

  private _stopPolling(): void {
    if (this._pollTimer !== null) {
      clearTimeout(this._pollTimer);
      this._pollTimer = null;
    }
  }

  /** GET runs/{id} now; again every second while the run is live. */
  async poll(): Promise<void> {
    this._stopPolling();
    const id = this.shownRunId;
    if (!id || this._disposed) {
      return;
    }
    let record: IRunRecord | null = null;
    try {
      record = await this.api.run(id);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        // not recorded yet (the worker is starting): try again
      } else {
        console.warn('nb2pipe: polling the run failed', e);
      }
    }
    if (id !== this.shownRunId || this._disposed) {
      return;
    }
    const wasLive = this.live;
    if (record) {
      this.record = record;
      applyRecord(this.graph, record);
      this.decorate();
      this.emit('run');
    }
    if (!record || this._keepPolling(record)) {
      this._pollTimer = window.setTimeout(() => void this.poll(), 1000);
    }
    if (record && (wasLive || record.live === false) && !this.runs.find(r => r.id === id && r.status === record!.status && r.live === record!.live)) {
      // the history row is behind the record: read the list again
      void this.refreshRuns();
    }
  }

  /** One live event of this notebook. */
  onEvent(ev: IRunEvent): void {
    if (ev.type === 'run' && ev.status === 'running' && ev.run_id !== this.shownRunId) {
      // a run of this notebook started (maybe in another tab): follow it
      this.watch(ev.run_id);
      void this.refreshRuns();
    }
    if (ev.run_id !== this.shownRunId) {
      return;
    }
    if (applyEvent(this.graph, ev)) {
      if (this.record && ev.type === 'step' && ev.step) {
        const s = this.record.steps.find(x => x.name === ev.step);
        if (s && ev.status) {
          s.status = ev.status === 'queued' ? 'pending' : ev.status;
          if (ev.duration !== null && ev.duration !== undefined) {
            s.duration = ev.duration;
          }
        }
      }
      this.decorate();
      this.emit('event');
    }
    if (ev.type === 'run' && ev.status && FINAL_RUN_STATUSES.includes(ev.status)) {
      void this.refreshRuns();
    }
    // after each burst of events, poll the record to be safe
    if (this._burstTimer !== null) {
      clearTimeout(this._burstTimer);
    }
    this._burstTimer = window.setTimeout(() => {
      this._burstTimer = null;
      void this.poll();
    }, 300);
  }

  /** POST runs; the new run becomes the shown one. */
  async start(req: Omit<IRunRequest, 'path'> = {}): Promise<string> {
    await this.saveIfDirty();
    this.busy = true;
    this.emit('busy');
    try {
      const { id } = await this.api.startRun({
        path: this.path,
        parameters: this.parameters,
        ...req
      });
      this.record = null;
      this.shownRunId = id;
      for (const n of this.graph.nodes) {
        if (!req.steps || req.steps.includes(n.name)) {
          n.status = 'queued';
          n.duration = null;
        }
      }
      this.emit('run');
      void this.poll();
      void this.refreshRuns();
      return id;
    } finally {
      this.busy = false;
      this.emit('busy');
    }
  }

  async cancel(): Promise<void> {
    const id = this.shownRunId;
    if (!id) {
      return;
    }
    await this.api.cancel(id);
    void this.poll();
  }

  async loadLog(step: string): Promise<ILogBuffer | null> {
    const id = this.shownRunId;
    if (!id) {
      return null;
    }
    const key = `${id}/${step}`;
    const buf = this.logs.get(key) || { text: '', offset: 0, done: false };
    if (buf.done) {
      return buf;
    }
    try {
      const chunk = await this.api.log(id, step, buf.offset);
      buf.text += chunk.text || '';
      buf.offset = chunk.offset;
      buf.done = chunk.done;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) {
        throw e;
      }
    }
    this.logs.set(key, buf);
    return buf;
  }
}
