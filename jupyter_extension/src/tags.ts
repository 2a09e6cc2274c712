/**
 * The nb2pipe tag language, on the frontend side: read and edit a cell's `tags` array.
 *
 * Pure functions (no JupyterLab imports). Every edit returns a new array and keeps the tags it
 * does not own (nbval's, nbclient's, the user's own) in their place.
 * Spellings follow nb2pipe/compile/tags.py, Kale aliases included.
 */

export type Flag = 'setup' | 'skip' | 'parameters' | 'metrics';
export type OptionName =
  | 'image'
  | 'cpu'
  | 'memory'
  | 'gpu'
  | 'retries'
  | 'timeout'
  | 'cache';

export const FLAGS: Flag[] = ['setup', 'skip', 'parameters', 'metrics'];
export const OPTIONS: OptionName[] = [
  'image',
  'cpu',
  'memory',
  'gpu',
  'retries',
  'timeout',
  'cache'
];

/** Bare tags that mean a flag, ours first, then the Kale aliases. */
export const FLAG_TAGS: { [F in Flag]: string[] } = {
  setup: ['setup', 'imports', 'functions'],
  skip: ['skip'],
  parameters: ['parameters', 'pipeline-parameters'],
  metrics: ['metrics', 'pipeline-metrics']
};

const STEP_PREFIXES = ['step', 'block'];
const AFTER_PREFIXES = ['after', 'prev'];
const GPU_RESOURCES = ['nvidia.com/gpu', 'amd.com/gpu', 'gpu'];

export const OPTION_HELP: { [O in OptionName]: string } = {
  image: 'image:REGISTRY/NAME:TAG',
  cpu: 'cores, e.g. 2 or 500m',
  memory: 'e.g. 512Mi, 4G',
  gpu: 'a whole number, 0–64',
  retries: 'a whole number, 0–20',
  timeout: 'seconds, e.g. 600',
  cache: 'cache:off turns caching off'
};

/** Same rule as nb2pipe.model.names: letters, digits, `_` and `-`. */
const STEP_NAME_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export function checkStepName(name: string): string | null {
  if (!name) {
    return 'a step name cannot be empty';
  }
  if (!STEP_NAME_RE.test(name)) {
    return 'use letters, digits, "_" and "-", starting with a letter or "_"';
  }
  if (name.length > 63) {
    return 'at most 63 characters';
  }
  return null;
}

export interface ITagState {
  step: string | null;
  after: string[];
  flags: { [F in Flag]: boolean };
  options: { [O in OptionName]?: string };
  /** Tags nb2pipe's editor does not own, kept as they are. */
  other: string[];
}

function split(tag: string): [string, string] | null {
  const i = tag.indexOf(':');
  if (i < 0) {
    return null;
  }
  return [tag.slice(0, i), tag.slice(i + 1)];
}

/** The option a tag sets, with its value (Kale's `limit:cpu:2` included), or null. */
export function optionOf(tag: string): [OptionName, string] | null {
  const kv = split(tag.trim());
  if (!kv) {
    return null;
  }
  const [prefix, value] = kv;
  if (prefix === 'limit') {
    const j = value.lastIndexOf(':');
    if (j < 0) {
      return null;
    }
    const resource = value.slice(0, j);
    const qty = value.slice(j + 1);
    if (resource === 'cpu' || resource === 'memory') {
      return [resource, qty];
    }
    if (GPU_RESOURCES.includes(resource)) {
      return ['gpu', qty];
    }
    return null;
  }
  if ((OPTIONS as string[]).includes(prefix)) {
    if (prefix === 'cache') {
      // Kale's cache:disabled means the same as cache:off
      return ['cache', value === 'disabled' ? 'off' : value];
    }
    return [prefix as OptionName, value];
  }
  return null;
}

function flagOf(tag: string): Flag | null {
  for (const f of FLAGS) {
    if (FLAG_TAGS[f].includes(tag)) {
      return f;
    }
  }
  return null;
}

/** Read a cell's tags. */
export function parseTags(tags: readonly string[]): ITagState {
  const state: ITagState = {
    step: null,
    after: [],
    flags: { setup: false, skip: false, parameters: false, metrics: false },
    options: {},
    other: []
  };
  for (const raw of tags) {
    const tag = raw.trim();
    const flag = flagOf(tag);
    if (flag) {
      state.flags[flag] = true;
      continue;
    }
    const kv = split(tag);
    if (kv && STEP_PREFIXES.includes(kv[0]) && kv[1]) {
      if (state.step === null) {
        state.step = kv[1];
      }
      continue;
    }
    if (kv && AFTER_PREFIXES.includes(kv[0]) && kv[1]) {
      if (!state.after.includes(kv[1])) {
        state.after.push(kv[1]);
      }
      continue;
    }
    const opt = optionOf(tag);
    if (opt) {
      state.options[opt[0]] = opt[1];
      continue;
    }
    state.other.push(raw);
  }
  return state;
}

function isStepTag(tag: string): boolean {
  const kv = split(tag.trim());
  return !!kv && STEP_PREFIXES.includes(kv[0]);
}

function isAfterTag(tag: string): boolean {
  const kv = split(tag.trim());
  return !!kv && AFTER_PREFIXES.includes(kv[0]);
}

/** Set (name) or clear (null / '') the cell's step tag; replaces step: and Kale's block: tags. */
export function setStep(tags: readonly string[], name: string | null): string[] {
  const idx = tags.findIndex(isStepTag);
  const rest = tags.filter(t => !isStepTag(t));
  if (!name) {
    return rest;
  }
  const tag = `step:${name}`;
  const at = idx < 0 ? 0 : Math.min(idx, rest.length);
  return [...rest.slice(0, at), tag, ...rest.slice(at)];
}

/** Replace the after:/prev: tags with `after:NAME` for each name. */
export function setAfter(tags: readonly string[], names: readonly string[]): string[] {
  const rest = tags.filter(t => !isAfterTag(t));
  const uniq: string[] = [];
  for (const n of names.map(n => n.trim()).filter(n => n)) {
    if (!uniq.includes(n)) {
      uniq.push(n);
    }
  }
  return [...rest, ...uniq.map(n => `after:${n}`)];
}

/** Turn a flag on (adds our spelling unless an alias is there) or off (removes every alias). */
export function setFlag(tags: readonly string[], flag: Flag, on: boolean): string[] {
  const aliases = FLAG_TAGS[flag];
  const has = tags.some(t => aliases.includes(t.trim()));
  if (on) {
    return has ? [...tags] : [...tags, aliases[0]];
  }
  return tags.filter(t => !aliases.includes(t.trim()));
}

/**
 * Set an option (`image:`, `cpu:`, ...) or clear it (value null or ''), replacing any spelling of
 * it, Kale's `limit:` included. `cache` takes 'off' (or 'on'); clearing it removes the tag.
 */
export function setOption(
  tags: readonly string[],
  name: OptionName,
  value: string | null
): string[] {
  const idx = tags.findIndex(t => optionOf(t)?.[0] === name);
  const rest = tags.filter(t => optionOf(t)?.[0] !== name);
  const v = value === null ? '' : String(value).trim();
  if (!v) {
    return rest;
  }
  const tag = `${name}:${v}`;
  if (idx < 0) {
    return [...rest, tag];
  }
  const at = Math.min(idx, rest.length);
  return [...rest.slice(0, at), tag, ...rest.slice(at)];
}

/**
 * Apply a whole editor state to a cell's tags, keeping tags the editor does not own; a field the
 * state leaves as it was keeps its spelling (a Kale alias stays a Kale alias).
 */
export function applyState(tags: readonly string[], state: ITagState): string[] {
  const orig = parseTags(tags);
  let out = [...tags];
  if ((state.step || null) !== orig.step) {
    out = setStep(out, state.step);
  }
  if (JSON.stringify(state.after) !== JSON.stringify(orig.after)) {
    out = setAfter(out, state.after);
  }
  for (const f of FLAGS) {
    if (state.flags[f] !== orig.flags[f]) {
      out = setFlag(out, f, state.flags[f]);
    }
  }
  for (const o of OPTIONS) {
    if ((state.options[o] || '') !== (orig.options[o] || '')) {
      out = setOption(out, o, state.options[o] ?? null);
    }
  }
  return out;
}

/** What one tag means to nb2pipe (a local fallback for the server's `cells[].meaning`). */
export function tagMeaning(raw: string): string {
  const tag = raw.trim();
  switch (tag) {
    case 'parameters':
      return 'parameters cell: its NAME = literal lines are pipeline parameters';
    case 'pipeline-parameters':
      return 'Kale alias of parameters: pipeline parameters';
    case 'setup':
      return 'setup cell: runs at the start of every step';
    case 'imports':
      return 'Kale alias of setup: runs at the start of every step';
    case 'functions':
      return 'Kale alias of setup: runs at the start of every step';
    case 'skip':
      return 'left out of the pipeline';
    case 'metrics':
      return "metrics cell: its scalar assignments are the run's metrics";
    case 'pipeline-metrics':
      return "Kale alias of metrics: the run's metrics";
    case 'raises-exception':
    case 'nbval-raises-exception':
      return 'the cell may raise; execution goes on';
    case 'skip-execution':
    case 'nbval-skip':
      return 'the cell is not run';
    case 'nbval-ignore-output':
    case 'nbval-check-output':
      return 'nbval output check: ignored by nb2pipe';
  }
  const kv = split(tag);
  if (kv) {
    const [prefix, value] = kv;
    if (prefix === 'step') {
      return `starts step ${value}`;
    }
    if (prefix === 'block') {
      return `Kale alias of step: starts step ${value}`;
    }
    if (prefix === 'after') {
      return `runs after step ${value}`;
    }
    if (prefix === 'prev') {
      return `Kale alias of after: runs after step ${value}`;
    }
    if (prefix === 'assert') {
      return `metric gate ${value}`;
    }
    const opt = optionOf(tag);
    if (opt) {
      const [name, v] = opt;
      const what =
        name === 'cache'
          ? v === 'off'
            ? 'caching off for this step'
            : `cache ${v}`
          : `step option ${name} = ${v}`;
      return prefix === 'limit' || (prefix === 'cache' && value === 'disabled')
        ? `Kale alias: ${what}`
        : what;
    }
    if (
      ['annotation', 'label', 'secret', 'report', 'notebook', 'volume'].includes(prefix)
    ) {
      return 'Kale Kubernetes tag: ignored by nb2pipe';
    }
  }
  return 'not an nb2pipe tag';
}

/** Step names used in a list of cells' tags, in order of first use. */
export function stepNames(allTags: readonly (readonly string[])[]): string[] {
  const names: string[] = [];
  for (const tags of allTags) {
    const s = parseTags(tags).step;
    if (s && !names.includes(s)) {
      names.push(s);
    }
  }
  return names;
}
