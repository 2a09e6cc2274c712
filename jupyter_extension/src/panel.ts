/**
 * The pipeline panel (#nb2pipe-panel): the DAG of the current notebook with live statuses
 * (dagview.ts), the plan, the parameters form, the run buttons, the node detail and the run
 * history with compare (history.ts).
 * Everything that comes from a notebook or a run is set with textContent.
 */
import { Widget } from '@lumino/widgets';

import { NotebookPipeline } from './controller';
import { renderDag } from './dagview';
import { button, el, section } from './dom';
import { formatDuration, formatSize, parseParamValue, stepRecord } from './graph';
import { RunHistory } from './history';
import { IArtifactRef, IConfig, IParam } from './types';

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


export class PipelinePanel extends Widget {
  private _p: NotebookPipeline | null = null;
  private _selected: string | null = null;
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
  private _history = new RunHistory();
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
    this.node.appendChild(this._history.root);
    this.node.appendChild(this._history.compareBox);
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
    this._history.reset();
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
    renderDag(this._dag, this._p, this._selected, step => this.select(step));
    this._renderPlan();
    this._renderDetail();
    this._history.render(this._p);
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
}
