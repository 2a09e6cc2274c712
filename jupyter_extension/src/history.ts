/**
 * The run history of the panel: the notebook's runs (click one to show it), and two of them
 * picked and compared side by side (parameters, metrics, steps). Text is set with textContent.
 */
import { NotebookPipeline } from './controller';
import { button, el, fmtTime, section, short } from './dom';
import { compareRuns, formatDuration, metricsMap } from './graph';

export class RunHistory {
  readonly compareBox = el('div', 'nb2pipe-compare');
  private _section = section('Run history', 'nb2pipe-history');
  private _p: NotebookPipeline | null = null;
  private _compare = new Set<string>();
  private _showCompare = false;

  get root(): HTMLElement {
    return this._section.root;
  }

  /** Forget the runs picked for comparing (another notebook is shown). */
  reset(): void {
    this._compare.clear();
    this._showCompare = false;
  }

  render(p: NotebookPipeline | null): void {
    this._p = p;
    this._renderHistory();
    this._renderCompare();
  }

  private _renderHistory(): void {
    const p = this._p;
    const body = this._section.body;
    body.replaceChildren();
    this._section.root.style.display = p ? '' : 'none';
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
    const box = this.compareBox;
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
