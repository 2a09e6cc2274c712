/**
 * REST client of the nb2pipe server extension (jupyter_extension/REST.md).
 * Every call goes through ServerConnection.makeRequest (token + XSRF header).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  IConfig,
  ILogChunk,
  IPipelineResponse,
  IProblem,
  IRunRecord,
  IRunSummary
} from './types';

/** An error answer of the server, with its problems when the pipeline is invalid. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly problems: IProblem[] = []
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface IRunRequest {
  path: string;
  parameters?: { [k: string]: any };
  steps?: string[];
  from?: string;
  no_cache?: boolean;
  executor?: string;
}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}

export class Nb2pipeApi {
  constructor(readonly settings: ServerConnection.ISettings) {}

  url(route: string, query?: { [k: string]: string | number | undefined }): string {
    let url = URLExt.join(this.settings.baseUrl, 'nb2pipe', 'api', route);
    if (query) {
      const q = Object.entries(query)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
        .join('&');
      if (q) {
        url += '?' + q;
      }
    }
    return url;
  }

  async raw(
    route: string,
    init: RequestInit = {},
    query?: { [k: string]: string | number | undefined }
  ): Promise<Response> {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(this.url(route, query), init, this.settings);
    } catch (error) {
      throw new ServerConnection.NetworkError(error as any);
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      let problems: IProblem[] = [];
      try {
        const body = await response.json();
        message = body.message || message;
        problems = body.problems || [];
      } catch {
        // not JSON
      }
      throw new ApiError(message, response.status, problems);
    }
    return response;
  }

  async json<T>(
    route: string,
    init: RequestInit = {},
    query?: { [k: string]: string | number | undefined }
  ): Promise<T> {
    const response = await this.raw(route, init, query);
    const text = await response.text();
    return (text ? JSON.parse(text) : {}) as T;
  }

  config(): Promise<IConfig> {
    return this.json<IConfig>('config');
  }

  pipeline(path: string, parameters?: { [k: string]: any }): Promise<IPipelineResponse> {
    const query: { [k: string]: string } = { path };
    if (parameters && Object.keys(parameters).length) {
      query.parameters = JSON.stringify(parameters);
    }
    return this.json<IPipelineResponse>('pipeline', {}, query);
  }

  /** POST pipeline: the same analysis of the editor's content (unsaved edits included). */
  analyse(path: string, notebook: any, parameters?: { [k: string]: any }): Promise<IPipelineResponse> {
    const body: { [k: string]: any } = { path, notebook };
    if (parameters && Object.keys(parameters).length) {
      body.parameters = parameters;
    }
    return this.json<IPipelineResponse>('pipeline', { method: 'POST', body: JSON.stringify(body) });
  }

  startRun(body: IRunRequest): Promise<{ id: string }> {
    return this.json<{ id: string }>('runs', {
      method: 'POST',
      body: JSON.stringify(body)
    });
  }

  runs(path: string, limit = 50): Promise<{ runs: IRunSummary[] }> {
    return this.json<{ runs: IRunSummary[] }>('runs', {}, { path, limit });
  }

  run(id: string): Promise<IRunRecord> {
    return this.json<IRunRecord>(`runs/${enc(id)}`);
  }

  cancel(id: string): Promise<{ id: string; status: string }> {
    return this.json(`runs/${enc(id)}`, { method: 'DELETE' });
  }

  log(id: string, step: string, offset: number): Promise<ILogChunk> {
    return this.json<ILogChunk>(`runs/${enc(id)}/steps/${enc(step)}/log`, {}, { offset });
  }

  stepNotebook(id: string, step: string): Promise<any> {
    return this.json<any>(`runs/${enc(id)}/steps/${enc(step)}/notebook`);
  }

  async artifact(sha256: string, name: string): Promise<Blob> {
    const r = await this.raw(`artifacts/${enc(sha256)}`, {}, { name });
    return r.blob();
  }

  async exportKfp(
    path: string,
    parameters?: { [k: string]: any }
  ): Promise<{ blob: Blob; filename: string }> {
    const r = await this.raw('export', {
      method: 'POST',
      body: JSON.stringify({ path, parameters: parameters || {} })
    });
    const cd = r.headers.get('Content-Disposition') || '';
    const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
    const base = path.split('/').pop() || 'pipeline.ipynb';
    const filename = m ? decodeURIComponent(m[1]) : base.replace(/\.ipynb$/, '') + '.yaml';
    return { blob: await r.blob(), filename };
  }

  submit(
    path: string,
    parameters?: { [k: string]: any },
    experiment?: string
  ): Promise<{ url: string; run_id: string }> {
    return this.json('submit', {
      method: 'POST',
      body: JSON.stringify({ path, parameters: parameters || {}, experiment })
    });
  }
}

/** Save a blob as a file through the browser's download (an <a download> click). */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.style.display = 'none';
  document.body.appendChild(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(url);
    a.remove();
  }, 1000);
}
