/**
 * The step editor: a dialog on the active cell that edits its nb2pipe tags (step, after, roles,
 * options) in the standard `tags` metadata, and shows what every tag means (Kale aliases too).
 */
import { el } from './dom';
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import {
  checkStepName,
  FLAGS,
  ITagState,
  OPTION_HELP,
  OPTIONS,
  parseTags,
  tagMeaning
} from './tags';

let uid = 0;


export class StepEditorBody extends Widget implements Dialog.IBodyWidget<ITagState> {
  private _state: ITagState;
  private _stepInput: HTMLInputElement;
  private _afterInput: HTMLInputElement;
  private _flagBoxes = new Map<string, HTMLInputElement>();
  private _optInputs = new Map<string, HTMLInputElement>();
  private _cacheOff: HTMLInputElement;
  private _warning: HTMLElement;

  constructor(tags: string[], stepNames: string[], meanings: string[] | null) {
    super();
    this.addClass('nb2pipe-editor');
    this._state = parseTags(tags);
    const id = `nb2pipe-editor-${++uid}`;
    const list = el('datalist');
    list.id = `${id}-steps`;
    for (const n of stepNames) {
      const o = el('option');
      o.value = n;
      list.appendChild(o);
    }
    this.node.appendChild(list);

    const row = (label: string, input: HTMLElement, help?: string) => {
      const r = el('label', 'nb2pipe-editor-row');
      r.appendChild(el('span', 'nb2pipe-editor-label', label));
      r.appendChild(input);
      if (help) {
        r.appendChild(el('span', 'nb2pipe-editor-help', help));
      }
      this.node.appendChild(r);
    };

    this._stepInput = el('input', 'jp-mod-styled nb2pipe-editor-step');
    this._stepInput.name = 'step';
    this._stepInput.placeholder = 'step name (empty: not a step start)';
    this._stepInput.setAttribute('list', list.id);
    this._stepInput.value = this._state.step ?? '';
    row('step:', this._stepInput);

    this._afterInput = el('input', 'jp-mod-styled nb2pipe-editor-after');
    this._afterInput.name = 'after';
    this._afterInput.placeholder = 'extra dependencies, comma separated';
    this._afterInput.setAttribute('list', list.id);
    this._afterInput.value = this._state.after.join(', ');
    row('after:', this._afterInput);

    const flags = el('div', 'nb2pipe-editor-flags');
    for (const f of FLAGS) {
      const l = el('label', 'nb2pipe-editor-flag');
      const box = el('input');
      box.type = 'checkbox';
      box.name = f;
      box.checked = this._state.flags[f];
      l.appendChild(box);
      l.appendChild(document.createTextNode(` ${f}`));
      flags.appendChild(l);
      this._flagBoxes.set(f, box);
    }
    this.node.appendChild(flags);

    for (const o of OPTIONS) {
      if (o === 'cache') {
        continue;
      }
      const input = el('input', 'jp-mod-styled');
      input.name = o;
      input.placeholder = OPTION_HELP[o];
      input.value = this._state.options[o] ?? '';
      this._optInputs.set(o, input);
      row(`${o}:`, input);
    }
    const cl = el('label', 'nb2pipe-editor-flag');
    this._cacheOff = el('input');
    this._cacheOff.type = 'checkbox';
    this._cacheOff.name = 'cache-off';
    this._cacheOff.checked = this._state.options.cache === 'off';
    cl.appendChild(this._cacheOff);
    cl.appendChild(document.createTextNode(' cache:off (always re-run this step)'));
    this.node.appendChild(cl);

    this._warning = el('div', 'nb2pipe-editor-warning');
    this.node.appendChild(this._warning);
    this._stepInput.addEventListener('input', () => this._check());

    if (tags.length) {
      this.node.appendChild(el('div', 'nb2pipe-editor-subtitle', 'Current tags'));
      const ul = el('ul', 'nb2pipe-editor-tags');
      tags.forEach((t, i) => {
        const li = el('li');
        li.appendChild(el('code', undefined, t));
        const meaning = meanings && meanings[i] ? meanings[i] : tagMeaning(t);
        li.appendChild(el('span', 'nb2pipe-editor-meaning', ` — ${meaning}`));
        ul.appendChild(li);
      });
      this.node.appendChild(ul);
    }
  }

  private _check(): void {
    const v = this._stepInput.value.trim();
    this._warning.textContent = v ? checkStepName(v) ?? '' : '';
  }

  getValue(): ITagState {
    const opts: ITagState['options'] = {};
    for (const [k, input] of this._optInputs) {
      const v = input.value.trim();
      if (v) {
        (opts as any)[k] = v;
      }
    }
    if (this._cacheOff.checked) {
      opts.cache = 'off';
    } else if (this._state.options.cache && this._state.options.cache !== 'off') {
      opts.cache = this._state.options.cache;
    }
    const flags = { ...this._state.flags };
    for (const [k, box] of this._flagBoxes) {
      (flags as any)[k] = box.checked;
    }
    return {
      step: this._stepInput.value.trim() || null,
      after: this._afterInput.value
        .split(/[,\s]+/)
        .map(s => s.trim())
        .filter(s => s),
      flags,
      options: opts,
      other: this._state.other
    };
  }
}

/** Show the editor; resolves to the new state, or null when cancelled. */
export async function editStepTags(
  tags: string[],
  stepNames: string[],
  meanings: string[] | null
): Promise<ITagState | null> {
  const body = new StepEditorBody(tags, stepNames, meanings);
  const result = await showDialog({
    title: 'nb2pipe: pipeline step of this cell',
    body,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Apply' })],
    focusNodeSelector: 'input.nb2pipe-editor-step'
  });
  if (!result.button.accept || !result.value) {
    return null;
  }
  const err = result.value.step ? checkStepName(result.value.step) : null;
  if (err) {
    await showDialog({
      title: 'nb2pipe: invalid step name',
      body: `${result.value.step}: ${err}`,
      buttons: [Dialog.okButton()]
    });
    return null;
  }
  return result.value;
}
