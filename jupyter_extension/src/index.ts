/**
 * nb2pipe for JupyterLab 4: tag cells as pipeline steps, see the DAG with live run status, run
 * history, executed step notebooks and artifacts, export and submit to Kubeflow Pipelines.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showDialog, Dialog, ToolbarButton } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Event } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';

import { ApiError, Nb2pipeApi, saveBlob } from './api';
import { NotebookPipeline } from './controller';
import { executedNotebookPath, RunDrive } from './drive';
import { editStepTags } from './editor';

import { PipelinePanel } from './panel';
import { applyState, Flag, FLAGS, OptionName, OPTIONS, parseTags, setAfter, setFlag, setOption, setStep, stepNames } from './tags';
import { EVENT_SCHEMA_ID, IConfig, IRunEvent } from './types';

export namespace CommandIDs {
  export const openPanel = 'nb2pipe:open-panel';
  export const run = 'nb2pipe:run';
  export const cancel = 'nb2pipe:cancel';
  export const exportKfp = 'nb2pipe:export-kfp';
  export const submitKfp = 'nb2pipe:submit-kfp';
  export const tagStep = 'nb2pipe:tag-step';
}

const pipelineIcon = new LabIcon({
  name: 'nb2pipe:pipeline',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="3" y="2" width="8" height="5" rx="1"/><rect x="13" y="9.5" width="8" height="5" rx="1"/>' +
    '<rect x="3" y="17" width="8" height="5" rx="1"/><path d="M7 7v10h2V7zM11 12h2v-1h-2z"/>' +
    '<path d="M8 11h5v2H8z"/></g></svg>'
});

/** A contents path with a drive prefix (`drive:path`) is not a notebook on the server's disk. */
function onServerDisk(path: string): boolean {
  const colon = path.indexOf(':');
  const slash = path.indexOf('/');
  return colon < 0 || (slash >= 0 && slash < colon);
}

function eventData(emission: Event.Emission): IRunEvent | null {
  if (emission.schema_id !== EVENT_SCHEMA_ID) {
    return null;
  }
  const e: any = emission;
  const d = e.data && typeof e.data === 'object' && 'run_id' in e.data ? e.data : e;
  if (!d || typeof d.run_id !== 'string') {
    return null;
  }
  return d as IRunEvent;
}

interface ITagArgs {
  name?: string | null;
  after?: string[] | string;
  setup?: boolean;
  skip?: boolean;
  parameters?: boolean;
  metrics?: boolean;
  options?: { [k: string]: string | null };
  index?: number;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nb2pipe:plugin',
  description:
    'nb2pipe: tag cells as pipeline steps, the DAG with live run status, run history, export to Kubeflow',
  autoStart: true,
  requires: [INotebookTracker, IDocumentManager],
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    docManager: IDocumentManager,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const api = new Nb2pipeApi(app.serviceManager.serverSettings);
    const controllers = new Map<NotebookPanel, NotebookPipeline>();
    let config: IConfig | null = null;

    app.serviceManager.contents.addDrive(new RunDrive(api));

    const current = (): NotebookPipeline | null => {
      const w = tracker.currentWidget;
      return (w && controllers.get(w)) || null;
    };

    const jumpToCell = (p: NotebookPipeline, index: number, cellId?: string | null) => {
      const nb = p.panel.content;
      let i = index;
      if (cellId) {
        const j = nb.widgets.findIndex(c => c.model.id === cellId);
        if (j >= 0) {
          i = j;
        }
      }
      if (i < 0 || i >= nb.widgets.length) {
        return;
      }
      app.shell.activateById(p.panel.id);
      nb.activeCellIndex = i;
      nb.deselectAll();
      void nb.scrollToItem(i, 'center').catch(() => undefined);
      nb.activeCell?.node.focus();
    };

    const openTagEditor = async (p: NotebookPipeline | null, index?: number) => {
      const w = p?.panel ?? tracker.currentWidget;
      if (!w) {
        return;
      }
      const nb = w.content;
      const i = index ?? nb.activeCellIndex;
      const cell = nb.widgets[i];
      if (!cell) {
        return;
      }
      const tags = (cell.model.getMetadata('tags') as string[] | undefined) ?? [];
      const names = new Set<string>(p?.pipeline?.spec?.steps.map(s => s.name) ?? []);
      for (const n of stepNames(nb.widgets.map(c => (c.model.getMetadata('tags') as string[]) ?? []))) {
        names.add(n);
      }
      const info = p?.pipeline?.cells.find(c => c.id && c.id === cell.model.id);
      const meanings = info && info.tags.length === tags.length ? info.meaning : null;
      const state = await editStepTags([...tags], Array.from(names), meanings);
      if (state) {
        writeTags(cell.model, applyState(tags, state));
      }
    };

    const writeTags = (model: { setMetadata(k: string, v: any): void; deleteMetadata(k: string): void }, tags: string[]) => {
      if (tags.length) {
        model.setMetadata('tags', tags);
      } else {
        model.deleteMetadata('tags');
      }
    };

    const panel = new PipelinePanel({
      config: () => config,
      run: async (p, req) => {
        await p.start(req);
      },
      cancel: p => p.cancel(),
      exportKfp: async p => {
        await p.saveIfDirty();
        const { blob, filename } = await api.exportKfp(p.path, p.parameters);
        saveBlob(blob, filename);
        panel.showMessage(`Exported ${filename}`);
      },
      submitKfp: async p => {
        await p.saveIfDirty();
        return api.submit(p.path, p.parameters);
      },
      jumpToCell,
      openExecuted: async (runId, step) => {
        // A kernel starts with it (the executed notebook is read-only, but its values can be
        // inspected again; ipywidgets' manager also expects a kernel on every notebook).
        const widget = docManager.openOrReveal(executedNotebookPath(runId, step), 'Notebook');
        if (widget) {
          // (no title.label change: a document title change renames the file)
          widget.addClass('nb2pipe-executed');
          widget.node.dataset.nb2pipeRun = runId;
          widget.node.dataset.nb2pipeStep = step;
        }
      },
      downloadArtifact: async a => {
        const blob = await api.artifact(a.sha256, a.name);
        saveBlob(blob, a.name);
      },
      loadIntoKernel: (p, name, runId) => {
        const nb = p.panel.content;
        app.shell.activateById(p.panel.id);
        NotebookActions.insertBelow(nb);
        const cell = nb.activeCell;
        if (cell) {
          const safeName = /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : 'value';
          cell.model.sharedModel.setSource(
            `import nb2pipe\n${safeName} = nb2pipe.load(${JSON.stringify(name)}, run=${JSON.stringify(runId)})`
          );
        }
      },
      editTags: () => void openTagEditor(current())
    });
    panel.title.icon = pipelineIcon;
    app.shell.add(panel, 'right', { rank: 600 });
    if (restorer) {
      restorer.add(panel, 'nb2pipe-panel');
    }

    const attach = (w: NotebookPanel) => {
      if (controllers.has(w) || !onServerDisk(w.context.path)) {
        return;
      }
      const c = new NotebookPipeline(w, api, (p, i) => {
        void openTagEditor(p, i);
      });
      controllers.set(w, c);
      w.disposed.connect(() => {
        controllers.delete(w);
        if (panel.current === c) {
          panel.setCurrent(null);
        }
        c.dispose();
      });
      // The tag editor on the notebook toolbar.
      const btn = new ToolbarButton({
        label: 'Step',
        icon: pipelineIcon,
        tooltip: 'nb2pipe: edit the pipeline step tags of the active cell',
        onClick: () => void openTagEditor(c),
        className: 'nb2pipe-toolbar-tag'
      });
      w.toolbar.insertAfter('cellType', 'nb2pipe-tag-step', btn);
      if (tracker.currentWidget === w) {
        panel.setCurrent(c);
      }
    };
    tracker.widgetAdded.connect((_, w) => attach(w));
    tracker.forEach(w => attach(w));
    tracker.currentChanged.connect((_, w) => {
      if (w && !controllers.has(w)) {
        attach(w);
      }
      const c = w ? controllers.get(w) ?? null : null;
      if (c || !w) {
        panel.setCurrent(c);
      }
    });

    void api
      .config()
      .then(c => {
        config = c;
        panel.render();
      })
      .catch(e => console.warn('nb2pipe: server extension not available', e));

    // Live run events from jupyter_server's event bus.
    let eventCount = 0;
    app.serviceManager.events.stream.connect((_, emission) => {
      const ev = eventData(emission);
      if (!ev) {
        return;
      }
      // how many run events this page received (a hook for tests and debugging)
      panel.node.dataset.events = String(++eventCount);
      for (const c of controllers.values()) {
        if (c.path === ev.path || c.shownRunId === ev.run_id) {
          c.onEvent(ev);
        }
      }
    });

    const withCurrent = async <T>(f: (p: NotebookPipeline) => Promise<T>): Promise<T | undefined> => {
      const p = current();
      if (!p) {
        await showDialog({ title: 'nb2pipe', body: 'Open a notebook first.', buttons: [Dialog.okButton()] });
        return undefined;
      }
      try {
        return await f(p);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        panel.showMessage(msg, 'error');
        if (e instanceof ApiError && e.problems.length) {
          panel.showMessage(`${msg}: ${e.problems.map(x => x.message).join('; ')}`, 'error');
        }
        throw e;
      }
    };

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'nb2pipe: Open Pipeline Panel',
      caption: 'Show the pipeline of the current notebook',
      execute: () => {
        app.shell.activateById(panel.id);
        const p = current();
        if (p && panel.current !== p) {
          panel.setCurrent(p);
        }
        return p ? p.refresh() : undefined;
      }
    });

    app.commands.addCommand(CommandIDs.run, {
      label: args => (args.from ? `nb2pipe: Run From ${args.from}` : args.steps ? 'nb2pipe: Run Steps' : 'nb2pipe: Run Pipeline'),
      caption: 'Run the pipeline of the current notebook (args: steps, from, no_cache)',
      execute: args =>
        withCurrent(async p => {
          app.shell.activateById(panel.id);
          const req: { steps?: string[]; from?: string; no_cache?: boolean } = {};
          if (Array.isArray(args.steps)) {
            req.steps = args.steps as string[];
          }
          if (typeof args.from === 'string') {
            req.from = args.from;
          }
          if (args.no_cache) {
            req.no_cache = true;
          }
          return p.start(req);
        })
    });

    app.commands.addCommand(CommandIDs.cancel, {
      label: 'nb2pipe: Cancel Run',
      isEnabled: () => !!current()?.live,
      execute: () => withCurrent(p => p.cancel())
    });

    app.commands.addCommand(CommandIDs.exportKfp, {
      label: 'nb2pipe: Export to Kubeflow Pipelines (YAML)',
      execute: () =>
        withCurrent(async p => {
          await p.saveIfDirty();
          const { blob, filename } = await api.exportKfp(p.path, p.parameters);
          saveBlob(blob, filename);
          return filename;
        })
    });

    app.commands.addCommand(CommandIDs.submitKfp, {
      label: 'nb2pipe: Submit to Kubeflow Pipelines',
      isVisible: () => !!config?.kfp_host,
      execute: () =>
        withCurrent(async p => {
          await p.saveIfDirty();
          const r = await api.submit(p.path, p.parameters);
          panel.showMessage(`Submitted to Kubeflow: run ${r.run_id}`, 'info', r.url);
          return r;
        })
    });

    app.commands.addCommand(CommandIDs.tagStep, {
      label: 'nb2pipe: Edit Step Tags of Cell',
      caption: 'Set or clear step:NAME (and after:, setup, skip, parameters, metrics, options) on the active cell',
      execute: async a => {
        const args = a as ITagArgs;
        const w = tracker.currentWidget;
        if (!w) {
          return;
        }
        const direct = ['name', 'after', 'options', ...FLAGS].some(k => k in args);
        if (!direct) {
          await openTagEditor(controllers.get(w) ?? null, args.index);
          return;
        }
        const nb = w.content;
        const cell = nb.widgets[args.index ?? nb.activeCellIndex];
        if (!cell) {
          return;
        }
        let tags = [...((cell.model.getMetadata('tags') as string[] | undefined) ?? [])];
        if ('name' in args) {
          tags = setStep(tags, args.name || null);
        }
        if (args.after !== undefined) {
          tags = setAfter(tags, Array.isArray(args.after) ? args.after : String(args.after).split(/[,\s]+/));
        }
        for (const f of FLAGS) {
          if (f in args) {
            tags = setFlag(tags, f as Flag, !!(args as any)[f]);
          }
        }
        for (const [k, v] of Object.entries(args.options ?? {})) {
          if ((OPTIONS as string[]).includes(k)) {
            tags = setOption(tags, k as OptionName, v === null ? null : String(v));
          }
        }
        writeTags(cell.model, tags);
        return parseTags(tags);
      }
    });

    app.contextMenu.addItem({ command: CommandIDs.tagStep, selector: '.jp-Notebook .jp-Cell', rank: 20 });

    if (palette) {
      for (const command of [
        CommandIDs.openPanel,
        CommandIDs.run,
        CommandIDs.cancel,
        CommandIDs.exportKfp,
        CommandIDs.submitKfp,
        CommandIDs.tagStep
      ]) {
        palette.addItem({ command, category: 'nb2pipe' });
      }
    }
    console.log('JupyterLab extension nb2pipe is activated!');
  }
};

export default plugin;
