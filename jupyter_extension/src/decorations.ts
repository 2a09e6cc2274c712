/**
 * On-notebook marks: each cell's step (a name badge on the cell that starts it, one colour per
 * step along the left edge of all its cells), setup/skip/parameters/metrics roles, and the
 * validation problems of the cell. Everything from the notebook is set as text.
 */
import { Cell } from '@jupyterlab/cells';
import { Notebook } from '@jupyterlab/notebook';

import { ICellInfo, IPipelineResponse, IProblem } from './types';

/** Step colours: JupyterLab theme variables only, so light and dark themes both work. */
export const STEP_COLOURS = [
  'var(--jp-brand-color1)',
  'var(--jp-warn-color1)',
  'var(--jp-success-color1)',
  'var(--jp-mirror-editor-keyword-color)',
  'var(--jp-mirror-editor-string-color)',
  'var(--jp-mirror-editor-number-color)',
  'var(--jp-mirror-editor-variable-2-color)',
  'var(--jp-mirror-editor-meta-color)',
  'var(--jp-accent-color1)',
  'var(--jp-mirror-editor-def-color)'
];

export function stepColour(stepNames: string[], name: string): string {
  const i = stepNames.indexOf(name);
  return STEP_COLOURS[(i < 0 ? 0 : i) % STEP_COLOURS.length];
}

const ROLE_LABEL: { [k: string]: string } = {
  setup: 'setup',
  skip: 'skip',
  parameters: 'parameters',
  metrics: 'metrics'
};

function clear(cell: Cell): void {
  cell.node.querySelectorAll(':scope > .nb2pipe-cell-mark').forEach(e => e.remove());
  cell.removeClass('nb2pipe-cell');
  cell.removeClass('nb2pipe-cell-has-problem');
  delete cell.node.dataset.nb2pipeStep;
  delete cell.node.dataset.nb2pipeRole;
  cell.node.style.removeProperty('--nb2pipe-step-colour');
}

export interface IDecorateOptions {
  onBadgeClick?: (cellIndex: number) => void;
  /** Step name -> node status of the shown run, for a small status dot on the badge. */
  statusOf?: (step: string) => string | null;
}

/** Mark every cell of `notebook` from the server's analysis `pipe` (null: remove all marks). */
export function decorateNotebook(
  notebook: Notebook,
  pipe: IPipelineResponse | null,
  opts: IDecorateOptions = {}
): void {
  const widgets = notebook.widgets;
  const byId = new Map<string, ICellInfo>();
  const problemsById = new Map<string, IProblem[]>();
  const problemsByIndex = new Map<number, IProblem[]>();
  const stepNames = pipe?.spec?.steps.map(s => s.name) ?? [];
  if (pipe) {
    for (const c of pipe.cells) {
      if (c.id) {
        byId.set(c.id, c);
      }
      if (c.step && !stepNames.includes(c.step)) {
        stepNames.push(c.step);
      }
    }
    for (const p of pipe.problems) {
      if (p.cell_id) {
        problemsById.set(p.cell_id, [...(problemsById.get(p.cell_id) || []), p]);
      } else if (p.cell_index !== null && p.cell_index !== undefined) {
        // 1-based, as the server counts cells
        const i = p.cell_index - 1;
        problemsByIndex.set(i, [...(problemsByIndex.get(i) || []), p]);
      }
    }
  }
  widgets.forEach((cell, index) => {
    clear(cell);
    if (!pipe) {
      return;
    }
    const id = cell.model.id;
    const info = (id && byId.get(id)) || (byId.size === 0 ? pipe.cells.find(c => c.index === index + 1) : undefined);
    const problems = [
      ...((id && problemsById.get(id)) || []),
      ...(problemsByIndex.get(index) || [])
    ];
    if (!info && problems.length === 0) {
      return;
    }
    cell.addClass('nb2pipe-cell');
    const mark = document.createElement('div');
    mark.className = 'nb2pipe-cell-mark';
    if (info) {
      cell.node.dataset.nb2pipeRole = info.role;
      const role = ROLE_LABEL[info.role];
      if (info.step) {
        cell.node.dataset.nb2pipeStep = info.step;
        cell.node.style.setProperty('--nb2pipe-step-colour', stepColour(stepNames, info.step));
        cell.addClass('nb2pipe-cell-in-step');
      } else {
        cell.removeClass('nb2pipe-cell-in-step');
      }
      if (info.role === 'step' && info.step) {
        const badge = document.createElement('button');
        badge.className = 'nb2pipe-badge nb2pipe-badge-step';
        badge.textContent = info.step;
        badge.title = (info.meaning.length ? info.meaning : info.tags).join('\n');
        const status = opts.statusOf?.(info.step);
        if (status) {
          badge.dataset.status = status;
        }
        badge.onclick = ev => {
          ev.stopPropagation();
          opts.onBadgeClick?.(index);
        };
        mark.appendChild(badge);
      }
      if (role) {
        const badge = document.createElement('span');
        badge.className = `nb2pipe-badge nb2pipe-badge-role nb2pipe-role-${info.role}`;
        badge.textContent = role;
        badge.title = (info.meaning.length ? info.meaning : info.tags).join('\n');
        mark.appendChild(badge);
      }
    }
    if (problems.length) {
      cell.addClass('nb2pipe-cell-has-problem');
      const list = document.createElement('ul');
      list.className = 'nb2pipe-cell-mark nb2pipe-cell-problems';
      for (const p of problems) {
        const li = document.createElement('li');
        li.className = `nb2pipe-problem nb2pipe-problem-${p.severity}`;
        li.textContent = `${p.severity}: ${p.message}${p.fix ? ` (fix: ${p.fix})` : ''}`;
        list.appendChild(li);
      }
      cell.node.appendChild(list);
    }
    if (mark.childNodes.length) {
      cell.node.appendChild(mark);
    }
  });
}
