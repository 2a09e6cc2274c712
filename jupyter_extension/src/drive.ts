/**
 * A read-only Contents drive, `nb2pipe-run:`, that serves executed step notebooks:
 * `nb2pipe-run:<run id>/<step>.ipynb` is `GET runs/{id}/steps/{step}/notebook`.
 * Opening such a path with the document manager shows the executed notebook in a Lab notebook view.
 */
import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { Nb2pipeApi } from './api';

export const DRIVE_NAME = 'nb2pipe-run';

export function executedNotebookPath(runId: string, step: string): string {
  return `${DRIVE_NAME}:${runId}/${step}.ipynb`;
}

function readOnly(): Promise<never> {
  return Promise.reject(new Error('nb2pipe-run: executed notebooks are read-only'));
}

export class RunDrive implements Contents.IDrive {
  readonly name = DRIVE_NAME;
  private _fileChanged = new Signal<Contents.IDrive, Contents.IChangedArgs>(this);
  private _disposed = false;

  constructor(private _api: Nb2pipeApi) {}

  get serverSettings(): ServerConnection.ISettings {
    return this._api.settings;
  }

  get fileChanged(): ISignal<Contents.IDrive, Contents.IChangedArgs> {
    return this._fileChanged;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    this._disposed = true;
    Signal.clearData(this);
  }

  async get(localPath: string, options?: Contents.IFetchOptions): Promise<Contents.IModel> {
    const path = localPath.replace(/^\/+/, '');
    const m = /^([^/]+)\/(.+)\.ipynb$/.exec(path);
    const now = new Date().toISOString();
    if (!m) {
      // the drive root or a run "folder": list nothing
      return {
        name: path.split('/').pop() || '',
        path,
        type: 'directory',
        writable: false,
        created: now,
        last_modified: now,
        mimetype: '',
        content: options?.content === false ? null : [],
        format: options?.content === false ? null : 'json'
      };
    }
    const [, runId, step] = m;
    const content = options?.content === false ? null : await this._api.stepNotebook(runId, step);
    return {
      name: `${step}.ipynb`,
      path,
      type: 'notebook',
      writable: false,
      created: now,
      last_modified: now,
      mimetype: 'application/x-ipynb+json',
      content,
      format: content === null ? null : 'json'
    };
  }

  async getDownloadUrl(localPath: string): Promise<string> {
    const m = /^\/?([^/]+)\/(.+)\.ipynb$/.exec(localPath);
    if (!m) {
      throw new Error(`not an executed notebook: ${localPath}`);
    }
    return this._api.url(
      `runs/${encodeURIComponent(m[1])}/steps/${encodeURIComponent(m[2])}/notebook`
    );
  }

  newUntitled(): Promise<Contents.IModel> {
    return readOnly();
  }
  delete(): Promise<void> {
    return readOnly();
  }
  rename(): Promise<Contents.IModel> {
    return readOnly();
  }
  save(): Promise<Contents.IModel> {
    return readOnly();
  }
  copy(): Promise<Contents.IModel> {
    return readOnly();
  }
  createCheckpoint(): Promise<Contents.ICheckpointModel> {
    return readOnly();
  }
  async listCheckpoints(): Promise<Contents.ICheckpointModel[]> {
    return [];
  }
  restoreCheckpoint(): Promise<void> {
    return readOnly();
  }
  deleteCheckpoint(): Promise<void> {
    return readOnly();
  }
}
