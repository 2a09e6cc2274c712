/**
 * The pipeline panel (#nb2pipe-panel): the DAG of the current notebook with live statuses, the
 * plan, the parameters form, the run buttons, the node detail and the run history with compare.
 * Everything that comes from a notebook or a run is set with textContent.
 */
import { el } from './dom';
import { Widget } from '@lumino/widgets';

import { NotebookPipeline } from './controller';
import {
  compareRuns,
  formatDuration,
  formatSize,
  IGraphNode,
  layoutGraph,
  metricsMap,
  parseParamValue,
  stepRecord
} from './graph';
import { IArtifactRef, IConfig, IParam } from './types';

const SVG_NS = 'http://www.w3.org/2000/svg';

export interface IPanelActions {
  config(): IConfig | null;
  run(p: NotebookPipeline, req?: { steps?: string[]; from?: string }): Promise<void>;
  cancel(p: NotebookPipeline): Promise<void>;
  exportKfp(p: NotebookPipeline): Promise<void>;
  submitKfp(p: NotebookPipeline): Promise<{ url: string; run_id: string } | null>;
  jumpToCell(p: NotebookPipeline, index: number, cellId?: string | null): void;
  openExecuted(runId: string, step: string): Promise<void>;
  downloadArtifact(a: IArtifactRef): Promise<void>;
  loadIntoKernel(p: NotebookPipeline, name: string, runId: string): void;
  editTags(): void;
}


function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: { [k: string]: string | number } = {}
): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    e.setAttribute(k, String(v));
  }
  return e;
}

function button(label: string, action: string, onClick: () => void, title?: string): HTMLButtonElement {
  const b = el('button', 'jp-Button jp-mod-styled nb2pipe-button', label);
  b.type = 'button';
  b.dataset.action = action;
  if (title) {
    b.title = title;
  }
  b.addEventListener('click', ev => {
    ev.stopPropagation();
    onClick();
  });
  return b;
}

function section(title: string, cls: string): { root: HTMLElement; body: HTMLElement } {
  const root = el('section', `nb2pipe-section ${cls}`);
  root.appendChild(el('h3', 'nb2pipe-section-title', title));
  const body = el('div', 'nb2pipe-section-body');
  root.appendChild(body);
  return { root, body };
}

function fmtTime(t: number | null | undefined): string {
  if (!t) {
    return '';
  }
  const d = new Date(t * 1000);
  return d.toLocaleString();
}

function short(v: any, max = 60): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}

export class PipelinePanel extends Widget {
  private _p: NotebookPipeline | null = null;
  private _selected: string | null = null;
  private _compare = new Set<string>();
  private _showCompare = false;
  private _message: { text: string; kind: 'info' | 'error'; link?: string } | null = null;
  private _paramsKey = '';
  private _logTimer: number | null = null;
  private _logKey = '';

  private _title: HTMLElement;
  private _toolbar: HTMLElement;
  private _status: HTMLElement;
  private _problems: HTMLElement;
  private _params: { root: HTMLElement; body: HTMLElement };
  private _plan: { root: HTMLElement; body: HTMLElement };
  private _dag: HTMLElement;
  private _detail: HTMLElement;
  private _history: { root: HTMLElement; body: HTMLElement };
  private _compareBox: HTMLElement;
  private _buttons: { [k: string]: HTMLButtonElement } = {};

  constructor(private _actions: IPanelActions) {
    super();
    this.id = 'nb2pipe-panel';
    this.addClass('nb2pipe-panel');
    this.title.caption = 'nb2pipe: pipeline of the current notebook';
    this.title.label = 'Pipeline';

    const header = el('div', 'nb2pipe-header');
    header.appendChild(el('h2', 'nb2pipe-heading', 'nb2pipe pipeline'));
    this._title = el('div', 'nb2pipe-path');
    header.appendChild(this._title);
    this.node.appendChild(header);

    this._toolbar = el('div', 'nb2pipe-toolbar');
    const b = this._buttons;
    b.run = button('Run', 'run', () => this._run(), 'Run the pipeline (cached steps are reused)');
    b.runStep = button('Run this step', 'run-step', () => this._run({ steps: [this._selected!] }), 'Run only the selected step');
    b.runFrom = button('Run from here', 'run-from', () => this._run({ from: this._selected! }), 'Run the selected step and everything downstream');
    b.cancel = button('Cancel', 'cancel', () => void this._guard(() => this._actions.cancel(this._p!)), 'Cancel the running run');
    b.export = button('Export to Kubeflow', 'export', () => void this._guard(() => this._actions.exportKfp(this._p!)), 'Download the Kubeflow Pipelines YAML');
    b.submit = button('Submit to Kubeflow', 'submit', () => void this._submit(), 'Submit the pipeline to the configured Kubeflow host');
    b.tag = button('Edit cell tags', 'tag-step', () => this._actions.editTags(), 'Edit the nb2pipe tags of the active cell');
    b.refresh = button('Refresh', 'refresh', () => {
      void this._p?.refresh();
      void this._p?.refreshRuns();
    });
    for (const k of Object.keys(b)) {
      this._toolbar.appendChild(b[k]);
    }
    this.node.appendChild(this._toolbar);

    this._status = el('div', 'nb2pipe-status');
    this._status.setAttribute('aria-live', 'polite');
    this.node.appendChild(this._status);
    this._problems = el('ul', 'nb2pipe-problems');
    this.node.appendChild(this._problems);

    this._params = section('Parameters', 'nb2pipe-params');
    this.node.appendChild(this._params.root);
    this._dag = el('div', 'nb2pipe-dag');
    this.node.appendChild(this._dag);
    this._plan = section('Plan', 'nb2pipe-plan');
    this.node.appendChild(this._plan.root);
    this._detail = el('div', 'nb2pipe-detail');
    this.node.appendChild(this._detail);
    this._history = section('Run history', 'nb2pipe-history');
    this.node.appendChild(this._history.root);
    this._compareBox = el('div', 'nb2pipe-compare');
    this.node.appendChild(this._compareBox);
    this.render();
  }

  get current(): NotebookPipeline | null {
    return this._p;
  }

  get selected(): string | null {
    return this._selected;
  }

  setCurrent(p: NotebookPipeline | null): void {
    if (p === this._p) {
      return;
    }
    this._p?.changed.disconnect(this._onChanged, this);
    this._p = p;
    this._selected = null;
    this._compare.clear();
    this._showCompare = false;
    this._message = null;
    this._paramsKey = '';
    p?.changed.connect(this._onChanged, this);
    this.render();
  }

  select(step: string | null): void {
    this._selected = step;
    this.render();
  }

  showMessage(text: string, kind: 'info' | 'error' = 'info', link?: string): void {
    this._message = { text, kind, link };
    this._renderStatus();
  }

  private _onChanged(_: NotebookPipeline, what: string): void {
    if (what === 'pipeline' && this._p && this._selected && !this._p.graph.nodes.some(n => n.name === this._selected)) {
      this._selected = null;
    }
    this.render();
  }

  private async _guard(f: () => Promise<any>): Promise<void> {
    if (!this._p) {
      return;
    }
    try {
      await f();
    } catch (e) {
      this.showMessage(e instanceof Error ? e.message : String(e), 'error');
    }
  }

  private _run(req?: { steps?: string[]; from?: string }): void {
    this._message = null;
    void this._guard(() => this._actions.run(this._p!, req));
  }

  private async _submit(): Promise<void> {
    await this._guard(async () => {
      const r = await this._actions.submitKfp(this._p!);
      if (r) {
        this.showMessage(`Submitted to Kubeflow: run ${r.run_id}`, 'info', r.url);
      }
    });
  }

  protected onAfterShow(): void {
    this.render();
  }

  protected onBeforeDetach(): void {
    this._stopLog();
  }

  render(): void {
    const p = this._p;
    this._title.textContent = p ? p.path : 'Open a notebook to see its pipeline.';
    this._renderButtons();
    this._renderStatus();
    this._renderProblems();
    this._renderParams();
    this._renderDag();
    this._renderPlan();
    this._renderDetail();
    this._renderHistory();
    this._renderCompare();
  }

  private _renderButtons(): void {
    const p = this._p;
    const b = this._buttons;
    const hasSpec = !!p?.pipeline?.spec;
    const live = !!p?.live;
    b.run.disabled = !hasSpec || live || !!p?.busy;
    b.runStep.disabled = !hasSpec || live || !this._selected;
    b.runFrom.disabled = !hasSpec || live || !this._selected;
    b.cancel.disabled = !live;
    b.export.disabled = !hasSpec;
    const cfg = this._actions.config();
    b.submit.style.display = cfg?.kfp_host ? '' : 'none';
    b.submit.disabled = !hasSpec;
    b.tag.disabled = !p;
    b.refresh.disabled = !p;
  }

  private _renderStatus(): void {
    const s = this._status;
    s.replaceChildren();
    const p = this._p;
    if (p?.error) {
      s.appendChild(el('div', 'nb2pipe-error', `Server: ${p.error}`));
    }
    if (p?.shownRunId) {
      const rec = p.record && p.record.id === p.shownRunId ? p.record : null;
      const sum = p.runs.find(r => r.id === p.shownRunId);
      const status = rec?.status ?? sum?.status ?? 'starting';
      const line = el('div', 'nb2pipe-run-line');
      line.dataset.runId = p.shownRunId;
      line.dataset.runStatus = p.live || !rec ? (rec ? status : 'running') : status;
      line.appendChild(el('span', 'nb2pipe-run-id', `Run ${p.shownRunId}`));
      line.appendChild(el('span', `nb2pipe-run-status nb2pipe-status-${status}`, ` ${status}`));
      const started = rec?.started ?? sum?.started;
      const ended = rec?.ended ?? sum?.ended;
      if (started) {
        const dur = (ended ?? Date.now() / 1000) - started;
        line.appendChild(el('span', 'nb2pipe-run-duration', ` · ${formatDuration(dur)}`));
      }
      if (rec?.reason && !p.live) {
        line.appendChild(el('span', 'nb2pipe-run-reason', ` · ${rec.reason}`));
      }
      if (!p.live) {
        const back = button('Show plan', 'show-plan', () => p.watch(null), 'Back to what the next run would do');
        back.classList.add('nb2pipe-link-button');
        line.appendChild(back);
      }
      s.appendChild(line);
    }
    if (this._message) {
      const m = el('div', `nb2pipe-message nb2pipe-message-${this._message.kind}`, this._message.text);
      if (this._message.link) {
        const a = el('a', 'nb2pipe-link', this._message.link);
        // only http(s) links are made clickable
        if (/^https?:\/\//i.test(this._message.link)) {
          a.href = this._message.link;
          a.target = '_blank';
          a.rel = 'noopener noreferrer';
        }
        m.appendChild(document.createTextNode(' '));
        m.appendChild(a);
      }
      s.appendChild(m);
    }
  }

  private _renderProblems(): void {
    const ul = this._problems;
    ul.replaceChildren();
    for (const pr of this._p?.pipeline?.problems ?? []) {
      const li = el('li', `nb2pipe-problem nb2pipe-problem-${pr.severity}`);
      const where = pr.cell_index !== null && pr.cell_index !== undefined ? `cell ${pr.cell_index}: ` : '';
      li.textContent = `${pr.severity}: ${where}${pr.message}${pr.fix ? ` (fix: ${pr.fix})` : ''}`;
      if (pr.cell_index !== null && pr.cell_index !== undefined) {
        li.classList.add('nb2pipe-clickable');
        li.addEventListener('click', () => this._actions.jumpToCell(this._p!, pr.cell_index! - 1, pr.cell_id));
      }
      ul.appendChild(li);
    }
  }

  private _renderParams(): void {
    const p = this._p;
    const params = p?.pipeline?.spec?.parameters ?? [];
    const key = p ? `${p.path}\u0000${JSON.stringify(params)}` : '';
    if (key === this._paramsKey) {
      return;
    }
    this._paramsKey = key;
    const body = this._params.body;
    body.replaceChildren();
    this._params.root.style.display = params.length ? '' : 'none';
    const form = el('form', 'nb2pipe-params-form');
    form.addEventListener('submit', ev => ev.preventDefault());
    for (const prm of params) {
      form.appendChild(this._paramInput(p!, prm));
    }
    body.appendChild(form);
  }

  private _paramInput(p: NotebookPipeline, prm: IParam): HTMLElement {
    const row = el('label', 'nb2pipe-param');
    row.dataset.param = prm.name;
    row.appendChild(el('span', 'nb2pipe-param-name', prm.name));
    row.appendChild(el('span', 'nb2pipe-param-type', prm.type ?? 'any'));
    const err = el('span', 'nb2pipe-param-error');
    const current = prm.name in p.parameters ? p.parameters[prm.name] : prm.default;
    let input: HTMLInputElement | HTMLTextAreaElement;
    if (prm.type === 'bool') {
      const box = el('input');
      box.type = 'checkbox';
      box.checked = !!current;
      input = box;
    } else if (prm.type === 'list' || prm.type === 'dict') {
      const ta = el('textarea', 'jp-mod-styled');
      ta.rows = 2;
      ta.value = JSON.stringify(current);
      input = ta;
    } else {
      const inp = el('input', 'jp-mod-styled');
      if (prm.type === 'int' || prm.type === 'float') {
        inp.type = 'number';
        inp.step = prm.type === 'int' ? '1' : 'any';
      } else {
        inp.type = 'text';
      }
      inp.value = current === null || current === undefined ? '' : String(current);
      input = inp;
    }
    input.name = prm.name;
    const onChange = () => {
      try {
        const v = parseParamValue(
          prm.type,
          input.value,
          (input as HTMLInputElement).checked
        );
        err.textContent = '';
        row.classList.remove('nb2pipe-param-invalid');
        if (JSON.stringify(v) === JSON.stringify(prm.default)) {
          delete p.parameters[prm.name];
        } else {
          p.parameters[prm.name] = v;
        }
        p.scheduleRefresh(400);
      } catch (e) {
        err.textContent = `expects ${(e as Error).message}`;
        row.classList.add('nb2pipe-param-invalid');
      }
    };
    input.addEventListener('change', onChange);
    row.appendChild(input);
    row.appendChild(err);
    return row;
  }

  private _renderPlan(): void {
    const p = this._p;
    const body = this._plan.body;
    body.replaceChildren();
    const plan = p?.pipeline?.plan;
    const show = !!p && !p.shownRunId && !!plan;
    this._plan.root.style.display = show ? '' : 'none';
    if (!show || !plan) {
      return;
    }
    const runs = plan.filter(s => s.action === 'run').length;
    body.appendChild(
      el('div', 'nb2pipe-plan-summary', `Next run: ${runs} step${runs === 1 ? '' : 's'} to run, ${plan.length - runs} cached`)
    );
    const ul = el('ul', 'nb2pipe-plan-list');
    for (const s of plan) {
      const li = el('li', `nb2pipe-plan-${s.action}`);
      li.dataset.step = s.step;
      li.appendChild(el('strong', undefined, s.step));
      li.appendChild(el('span', 'nb2pipe-plan-action', ` ${s.action === 'run' ? 'would run' : 'cached'}`));
      if (s.reason) {
        li.appendChild(el('span', 'nb2pipe-plan-reason', ` — ${s.reason}`));
      }
      ul.appendChild(li);
    }
    body.appendChild(ul);
  }

  private _renderDag(): void {
    const box = this._dag;
    box.replaceChildren();
    const p = this._p;
    if (!p) {
      return;
    }
    const g = p.graph;
    if (!g.nodes.length) {
      box.appendChild(
        el('div', 'nb2pipe-empty', p.pipeline ? 'No pipeline: fix the problems above.' : 'Loading the pipeline…')
      );
      return;
    }
    const W = 160;
    const H = 46;
    const lay = layoutGraph(g, { width: W, height: H });
    const root = svg('svg', {
      class: 'nb2pipe-dag-svg',
      width: lay.width,
      height: lay.height,
      viewBox: `0 0 ${lay.width} ${lay.height}`,
      role: 'img'
    });
    root.setAttribute('aria-label', 'pipeline graph');
    // a click on the background clears the selection
    root.addEventListener('click', () => this.select(null));
    const defs = svg('defs');
    const marker = svg('marker', {
      id: 'nb2pipe-arrow',
      viewBox: '0 0 10 10',
      refX: 9,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: 'auto-start-reverse'
    });
    marker.appendChild(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'nb2pipe-arrow' }));
    defs.appendChild(marker);
    root.appendChild(defs);
    for (const e of lay.edges) {
      if (!e.points.length) {
        continue;
      }
      const d = e.points.map((pt, i) => `${i ? 'L' : 'M'} ${pt.x.toFixed(1)} ${pt.y.toFixed(1)}`).join(' ');
      const path = svg('path', { d, class: 'nb2pipe-edge', 'marker-end': 'url(#nb2pipe-arrow)' });
      path.setAttribute('data-from', e.from);
      path.setAttribute('data-to', e.to);
      if (e.names.length) {
        const t = svg('title');
        t.textContent = `${e.from} → ${e.to}: ${e.names.join(', ')}`;
        path.appendChild(t);
      }
      root.appendChild(path);
    }
    for (const ln of lay.nodes) {
      const n = g.nodes.find(x => x.name === ln.name)!;
      root.appendChild(this._node(n, ln.x - ln.width / 2, ln.y - ln.height / 2, ln.width, ln.height));
    }
    box.appendChild(root);
    const legend = el('div', 'nb2pipe-legend');
    const used = Array.from(new Set(g.nodes.map(n => n.status)));
    for (const s of used) {
      const item = el('span', 'nb2pipe-legend-item');
      item.dataset.status = s;
      item.appendChild(el('span', 'nb2pipe-legend-swatch'));
      item.appendChild(document.createTextNode(s));
      legend.appendChild(item);
    }
    box.appendChild(legend);
  }

  private _node(n: IGraphNode, x: number, y: number, w: number, h: number): SVGGElement {
    const g = svg('g', { class: 'nb2pipe-node', transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`, tabindex: 0 });
    g.setAttribute('data-step', n.name);
    g.setAttribute('data-status', n.status);
    g.setAttribute('role', 'button');
    if (n.name === this._selected) {
      g.classList.add('nb2pipe-node-selected');
    }
    g.appendChild(svg('rect', { class: 'nb2pipe-node-box', width: w, height: h, rx: 6, ry: 6 }));
    g.appendChild(svg('rect', { class: 'nb2pipe-node-bar', width: 5, height: h, rx: 2, ry: 2 }));
    const name = svg('text', { class: 'nb2pipe-node-name', x: 12, y: 18 });
    name.textContent = n.name.length > 20 ? n.name.slice(0, 19) + '…' : n.name;
    g.appendChild(name);
    const parts: string[] = [n.status];
    if (n.status === 'running' && n.cell && n.cells) {
      parts.push(`cell ${n.cell}/${n.cells}`);
    }
    if (n.duration !== null && n.duration !== undefined) {
      parts.push(formatDuration(n.duration));
    }
    const sub = svg('text', { class: 'nb2pipe-node-sub', x: 12, y: 35 });
    sub.textContent = parts.join(' · ');
    g.appendChild(sub);
    const title = svg('title');
    title.textContent = `${n.name}: ${n.status}${n.reason ? ` — ${n.reason}` : ''}`;
    g.appendChild(title);
    const pick = () => this.select(n.name);
    g.addEventListener('click', ev => {
      ev.stopPropagation();
      pick();
    });
    g.addEventListener('keydown', ev => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        pick();
      }
    });
    return g;
  }

  private _stopLog(): void {
    if (this._logTimer !== null) {
      clearTimeout(this._logTimer);
      this._logTimer = null;
    }
  }

  private _renderDetail(): void {
    const box = this._detail;
    const p = this._p;
    const name = this._selected;
    const node = p?.graph.nodes.find(n => n.name === name);
    box.replaceChildren();
    if (!p || !node || !name) {
      this._stopLog();
      this._logKey = '';
      box.style.display = 'none';
      return;
    }
    box.style.display = '';
    box.dataset.step = name;
    const rec = p.record && p.record.id === p.shownRunId ? p.record : null;
    const srec = stepRecord(rec, name);
    const head = el('h3', 'nb2pipe-detail-title');
    head.appendChild(el('span', undefined, name));
    head.appendChild(el('span', `nb2pipe-detail-status nb2pipe-status-${node.status}`, ` ${node.status}`));
    if (node.duration !== null) {
      head.appendChild(el('span', 'nb2pipe-detail-duration', ` · ${formatDuration(node.duration)}`));
    }
    box.appendChild(head);
    if (node.reason) {
      box.appendChild(el('div', 'nb2pipe-detail-reason', node.reason));
    }
    if (srec?.cached_from) {
      box.appendChild(el('div', 'nb2pipe-detail-reason', `outputs reused from run ${srec.cached_from}`));
    }

    // cells
    const cells = el('div', 'nb2pipe-detail-cells');
    cells.appendChild(el('span', 'nb2pipe-detail-label', 'Cells: '));
    for (const c of node.step.cells) {
      const b = button(`cell ${c.index}`, 'jump-cell', () => this._actions.jumpToCell(p, c.index - 1, c.id), 'Go to this cell');
      b.classList.add('nb2pipe-link-button');
      b.dataset.cellIndex = String(c.index);
      cells.appendChild(b);
    }
    box.appendChild(cells);

    // options
    const opts = Object.entries(node.step.options || {}).filter(
      ([k, v]) => v !== null && v !== undefined && v !== true && !(k === 'retries' && v === 0)
    );
    if (opts.length) {
      box.appendChild(el('div', 'nb2pipe-detail-options', `Options: ${opts.map(([k, v]) => `${k}=${v === false ? 'off' : v}`).join(', ')}`));
    }

    // inputs / outputs
    const io = (label: string, refs: IArtifactRef[] | null, fallback: string[], cls: string, withActions: boolean) => {
      const wrap = el('div', `nb2pipe-detail-io ${cls}`);
      wrap.appendChild(el('div', 'nb2pipe-detail-label', label));
      const list = el('ul', 'nb2pipe-artifacts');
      if (refs && refs.length) {
        for (const a of refs) {
          const li = el('li', 'nb2pipe-artifact');
          li.dataset.artifact = a.name;
          const line = el('div', 'nb2pipe-artifact-line');
          line.appendChild(el('span', 'nb2pipe-mono nb2pipe-artifact-name', a.name));
          line.appendChild(el('span', 'nb2pipe-artifact-type', a.type_name));
          line.appendChild(el('span', 'nb2pipe-artifact-size', formatSize(a.size)));
          if (a.producer_step && cls === 'nb2pipe-inputs') {
            line.appendChild(el('span', 'nb2pipe-muted', `from ${a.producer_step}`));
          }
          li.appendChild(line);
          if (withActions) {
            const act = el('div', 'nb2pipe-artifact-actions');
            const dl = button('Download', 'download-artifact', () => void this._guard(() => this._actions.downloadArtifact(a)));
            dl.classList.add('nb2pipe-link-button');
            act.appendChild(dl);
            const runId = a.run_id || rec?.id;
            if (runId) {
              const ld = button('Load into kernel', 'load-artifact', () => this._actions.loadIntoKernel(p, a.name, runId));
              ld.classList.add('nb2pipe-link-button');
              act.appendChild(ld);
            }
            li.appendChild(act);
          }
          list.appendChild(li);
        }
      } else if (fallback.length) {
        for (const f of fallback) {
          list.appendChild(el('li', 'nb2pipe-mono', f));
        }
      } else {
        list.appendChild(el('li', 'nb2pipe-muted', 'none'));
      }
      wrap.appendChild(list);
      box.appendChild(wrap);
    };
    io(
      'Inputs',
      srec ? srec.inputs : null,
      node.step.inputs.map(i => `${i.name} ← ${i.producer}`),
      'nb2pipe-inputs',
      true
    );
    io('Outputs', srec ? srec.outputs : null, node.step.outputs, 'nb2pipe-outputs', true);

    // error
    if (srec?.error) {
      const err = srec.error;
      const eb = el('div', 'nb2pipe-detail-error');
      eb.appendChild(el('div', 'nb2pipe-error', `${err.reason}: ${err.message}`));
      if (err.ename) {
        eb.appendChild(el('div', 'nb2pipe-mono', `${err.ename}: ${err.evalue ?? ''}`));
      }
      if (err.cell_index !== null && err.cell_index !== undefined) {
        // the record counts cells from 1
        const idx = err.cell_index - 1;
        const jump = button(`Go to failing cell ${err.cell_index}${err.line ? `, line ${err.line}` : ''}`, 'jump-error', () => this._actions.jumpToCell(p, idx, err.cell_id));
        jump.classList.add('nb2pipe-link-button');
        eb.appendChild(jump);
      }
      if (err.traceback && err.traceback.length) {
        eb.appendChild(el('pre', 'nb2pipe-traceback', err.traceback.join('\n')));
      }
      box.appendChild(eb);
    }

    // executed notebook
    const runId = p.shownRunId;
    const ran = !!srec && !['pending', 'queued'].includes(srec.status);
    if (runId && ran) {
      const open = button('Open executed notebook', 'open-executed', () => void this._guard(() => this._actions.openExecuted(runId, name)));
      box.appendChild(open);
    }

    // log
    if (runId && (ran || node.status === 'running')) {
      box.appendChild(el('div', 'nb2pipe-detail-label', 'Log'));
      const pre = el('pre', 'nb2pipe-log');
      const key = `${runId}/${name}`;
      const buf = p.logs.get(key);
      pre.textContent = buf?.text ?? '';
      box.appendChild(pre);
      if (this._logKey !== key || this._logTimer === null) {
        this._logKey = key;
        this._pollLog(p, name, key);
      }
    } else {
      this._stopLog();
      this._logKey = '';
    }
  }

  private _pollLog(p: NotebookPipeline, step: string, key: string): void {
    this._stopLog();
    const tick = async () => {
      this._logTimer = null;
      if (this._p !== p || this._logKey !== key) {
        return;
      }
      let done = true;
      try {
        const buf = await p.loadLog(step);
        if (this._p !== p || this._logKey !== key) {
          return;
        }
        const pre = this._detail.querySelector('pre.nb2pipe-log');
        if (pre && buf && pre.textContent !== buf.text) {
          const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.textContent = buf.text;
          if (atEnd) {
            pre.scrollTop = pre.scrollHeight;
          }
        }
        const node = p.graph.nodes.find(n => n.name === step);
        done = !buf || buf.done || !(p.live && (node?.status === 'running' || node?.status === 'queued'));
        if (buf && !buf.done && p.live) {
          done = false;
        }
      } catch {
        done = !p.live;
      }
      if (!done) {
        this._logTimer = window.setTimeout(() => void tick(), 1000);
      }
    };
    this._logTimer = window.setTimeout(() => void tick(), 0);
  }

  private _renderHistory(): void {
    const p = this._p;
    const body = this._history.body;
    body.replaceChildren();
    this._history.root.style.display = p ? '' : 'none';
    if (!p) {
      return;
    }
    if (!p.runs.length) {
      body.appendChild(el('div', 'nb2pipe-muted', 'No runs of this notebook yet.'));
      return;
    }
    const bar = el('div', 'nb2pipe-history-bar');
    const cmp = button(`Compare selected (${this._compare.size}/2)`, 'compare', () => {
      this._showCompare = this._compare.size === 2;
      this._renderCompare();
    });
    cmp.disabled = this._compare.size !== 2;
    bar.appendChild(cmp);
    body.appendChild(bar);
    const table = el('table', 'nb2pipe-table nb2pipe-runs');
    const head = el('tr');
    for (const h of ['', 'run', 'status', 'duration']) {
      head.appendChild(el('th', undefined, h));
    }
    table.appendChild(head);
    for (const r of p.runs) {
      const tr = el('tr', 'nb2pipe-run-row');
      tr.dataset.runId = r.id;
      tr.dataset.status = r.status;
      if (r.id === p.shownRunId) {
        tr.classList.add('nb2pipe-run-row-shown');
      }
      const tdc = el('td');
      tdc.rowSpan = 2;
      const box = el('input');
      box.type = 'checkbox';
      box.checked = this._compare.has(r.id);
      box.title = 'Pick two runs to compare';
      box.addEventListener('click', ev => ev.stopPropagation());
      box.addEventListener('change', () => {
        if (box.checked) {
          this._compare.add(r.id);
          while (this._compare.size > 2) {
            this._compare.delete(this._compare.values().next().value as string);
          }
        } else {
          this._compare.delete(r.id);
        }
        this._showCompare = this._showCompare && this._compare.size === 2;
        this._renderHistory();
        this._renderCompare();
      });
      tdc.appendChild(box);
      tr.appendChild(tdc);
      tr.appendChild(el('td', 'nb2pipe-mono', r.id));
      tr.appendChild(el('td', `nb2pipe-status-${r.status}`, p.isLive(r) ? `${r.status} (live)` : r.status));
      tr.appendChild(el('td', undefined, formatDuration(r.duration)));
      const tr2 = el('tr', 'nb2pipe-run-more-row');
      if (r.id === p.shownRunId) {
        tr2.classList.add('nb2pipe-run-row-shown');
      }
      const more = el('td', 'nb2pipe-run-more');
      more.colSpan = 3;
      more.appendChild(el('span', undefined, fmtTime(r.started)));
      const params = Object.keys(r.parameters || {}).length ? short(r.parameters) : '';
      if (params) {
        more.appendChild(el('span', 'nb2pipe-mono', ` · ${params}`));
      }
      const metrics = metricsMap(r.metrics);
      if (Object.keys(metrics).length) {
        more.appendChild(el('span', 'nb2pipe-mono nb2pipe-run-metrics', ` · ${short(metrics)}`));
      }
      tr2.appendChild(more);
      tr.addEventListener('click', () => p.watch(r.id));
      tr2.addEventListener('click', () => p.watch(r.id));
      table.appendChild(tr);
      table.appendChild(tr2);
    }
    body.appendChild(table);
  }

  private _renderCompare(): void {
    const box = this._compareBox;
    box.replaceChildren();
    const p = this._p;
    if (!p || !this._showCompare || this._compare.size !== 2) {
      box.style.display = 'none';
      return;
    }
    const [ida, idb] = Array.from(this._compare);
    const a = p.runs.find(r => r.id === ida);
    const b = p.runs.find(r => r.id === idb);
    if (!a || !b) {
      box.style.display = 'none';
      return;
    }
    box.style.display = '';
    box.appendChild(el('h3', 'nb2pipe-section-title', 'Compare runs'));
    const close = button('Close', 'close-compare', () => {
      this._showCompare = false;
      this._renderCompare();
    });
    close.classList.add('nb2pipe-link-button');
    box.appendChild(close);
    const c = compareRuns(a, b);
    const table = el('table', 'nb2pipe-table nb2pipe-compare-table');
    const hr = el('tr');
    hr.appendChild(el('th'));
    hr.appendChild(el('th', 'nb2pipe-mono', a.id));
    hr.appendChild(el('th', 'nb2pipe-mono', b.id));
    table.appendChild(hr);
    const group = (title: string, rows: { key: string; a: string; b: string; differs: boolean }[]) => {
      const tr = el('tr', 'nb2pipe-compare-group');
      const th = el('th', undefined, title);
      th.colSpan = 3;
      tr.appendChild(th);
      table.appendChild(tr);
      if (!rows.length) {
        const r = el('tr');
        const td = el('td', 'nb2pipe-muted', 'none');
        td.colSpan = 3;
        r.appendChild(td);
        table.appendChild(r);
      }
      for (const row of rows) {
        const r = el('tr', row.differs ? 'nb2pipe-differs' : '');
        r.appendChild(el('td', 'nb2pipe-mono', row.key));
        r.appendChild(el('td', undefined, row.a));
        r.appendChild(el('td', undefined, row.b));
        table.appendChild(r);
      }
    };
    group('status', [{ key: 'run', a: a.status, b: b.status, differs: a.status !== b.status }, { key: 'duration', a: formatDuration(a.duration), b: formatDuration(b.duration), differs: false }]);
    group('parameters', c.parameters);
    group('metrics', c.metrics);
    group('steps (status · duration)', c.steps);
    box.appendChild(table);
  }
}

