// Unit tests of the graph model (src/graph.ts): building from the spec, merging statuses.
const test = require('node:test');
const assert = require('node:assert/strict');
const g = require('../test-build/graph.js');

function step(name, after = []) {
  return { name, kfp_name: name, cells: [{ index: 0, id: null }], inputs: [], outputs: [], after, options: {}, metrics: false };
}
const spec = {
  steps: [step('load'), step('train'), step('evaluate', ['load'])],
  edges: [
    { from: 'load', to: 'train', names: ['df'] },
    { from: 'train', to: 'evaluate', names: ['model'] },
    { from: 'load', to: 'train', names: ['y'] }
  ],
  parameters: []
};

test('buildGraph makes one node per step and merges duplicate edges, after: included', () => {
  const graph = g.buildGraph(spec);
  assert.deepEqual(graph.nodes.map(n => n.name), ['load', 'train', 'evaluate']);
  assert.ok(graph.nodes.every(n => n.status === 'idle'));
  assert.deepEqual(graph.edges.map(e => [e.from, e.to, e.names]), [
    ['load', 'train', ['df', 'y']],
    ['train', 'evaluate', ['model']],
    ['load', 'evaluate', []]
  ]);
  assert.deepEqual(g.buildGraph(null), { nodes: [], edges: [] });
});

test('applyPlan marks would-run and cached with the reason', () => {
  const graph = g.applyPlan(g.buildGraph(spec), [
    { step: 'load', action: 'cached', reason: 'same code and inputs' },
    { step: 'train', action: 'run', reason: 'parameter n changed' }
  ]);
  assert.deepEqual(graph.nodes.map(n => n.status), ['cached', 'would-run', 'idle']);
  assert.equal(graph.nodes[1].reason, 'parameter n changed');
});

test('applyEvent: run start queues, step events set statuses, cell events progress', () => {
  const graph = g.buildGraph(spec);
  const ev = (o) => Object.assign({ run_id: 'r', path: 'nb.ipynb', type: 'step', status: null, step: null, attempt: null, duration: null, cached: null, cell_index: null, cells: null, source_cell: null, message: null }, o);
  assert.equal(g.applyEvent(graph, ev({ type: 'run', status: 'running' })), true);
  assert.deepEqual(graph.nodes.map(n => n.status), ['queued', 'queued', 'queued']);
  g.applyEvent(graph, ev({ step: 'load', status: 'running' }));
  g.applyEvent(graph, ev({ type: 'cell', step: 'load', cell_index: 1, cells: 3 }));
  assert.equal(graph.nodes[0].status, 'running');
  assert.equal(graph.nodes[0].cell, 1);
  g.applyEvent(graph, ev({ step: 'load', status: 'succeeded', duration: 1.5 }));
  g.applyEvent(graph, ev({ step: 'train', status: 'cached', cached: true }));
  assert.deepEqual(graph.nodes.map(n => n.status), ['succeeded', 'cached', 'queued']);
  assert.equal(graph.nodes[0].duration, 1.5);
  assert.equal(g.applyEvent(graph, ev({ step: 'nope', status: 'running' })), false);
  g.applyEvent(graph, ev({ step: 'evaluate', status: 'running' }));
  g.applyEvent(graph, ev({ type: 'run', status: 'cancelled' }));
  assert.equal(graph.nodes[2].status, 'cancelled');
});

test('applyRecord maps store statuses, cancelled errors and pending steps of an ended run', () => {
  const graph = g.buildGraph(spec);
  const s = (name, status, extra = {}) => Object.assign({ name, status, started: null, ended: null, duration: 2, cached: false, attempts: 1, inputs: [], outputs: [], error: null }, extra);
  g.applyRecord(graph, { id: 'r', notebook: 'nb', status: 'running', started: 1, ended: null, parameters: {}, metrics: [], live: true,
    steps: [s('load', 'succeeded'), s('train', 'running'), s('evaluate', 'pending')], current: { train: { cell_index: 2, cells: 4 } } });
  assert.deepEqual(graph.nodes.map(n => n.status), ['succeeded', 'running', 'queued']);
  assert.equal(graph.nodes[1].cell, 2);
  g.applyRecord(graph, { id: 'r', notebook: 'nb', status: 'cancelled', started: 1, ended: 3, parameters: {}, metrics: [], live: false,
    steps: [s('load', 'succeeded', { cached: true }), s('train', 'failed', { error: { reason: 'cancelled', message: 'x' } }), s('evaluate', 'pending')] });
  assert.deepEqual(graph.nodes.map(n => n.status), ['cached', 'cancelled', 'cancelled']);
  g.applyRecord(graph, { id: 'r', notebook: 'nb', status: 'failed', started: 1, ended: 3, parameters: {}, metrics: [], live: false,
    steps: [s('load', 'failed'), s('train', 'pending'), s('evaluate', 'skipped')] });
  assert.deepEqual(graph.nodes.map(n => n.status), ['failed', 'skipped', 'skipped']);
});

test('applySummary uses a history row', () => {
  const graph = g.applySummary(g.buildGraph(spec), { id: 'r', status: 'succeeded', live: false, steps: [{ name: 'load', status: 'succeeded', cached: true, duration: 0.1 }] });
  assert.deepEqual(graph.nodes.map(n => n.status), ['cached', 'idle', 'idle']);
});

test('downstream of a step', () => {
  const graph = g.buildGraph(spec);
  assert.deepEqual(g.downstream(graph, 'train'), ['train', 'evaluate']);
  assert.deepEqual(g.downstream(graph, 'load'), ['load', 'train', 'evaluate']);
});

test('layoutGraph places every node with dagre, ranks top to bottom', () => {
  const lay = g.layoutGraph(g.buildGraph(spec));
  assert.equal(lay.nodes.length, 3);
  const y = Object.fromEntries(lay.nodes.map(n => [n.name, n.y]));
  assert.ok(y.load < y.train && y.train < y.evaluate);
  assert.ok(lay.edges.every(e => e.points.length >= 2));
  assert.ok(lay.width > 0 && lay.height > 0);
});

test('formatting of durations and sizes', () => {
  assert.equal(g.formatDuration(0.25), '250 ms');
  assert.equal(g.formatDuration(3.21), '3.2 s');
  assert.equal(g.formatDuration(125), '2 min 5 s');
  assert.equal(g.formatDuration(null), '');
  assert.equal(g.formatSize(512), '512 B');
  assert.equal(g.formatSize(2048), '2.0 KiB');
});

test('metricsMap and compareRuns', () => {
  assert.deepEqual(g.metricsMap([{ name: 'acc', value: 0.9 }]), { acc: 0.9 });
  const a = { id: 'a', status: 'succeeded', parameters: { n: 1 }, metrics: [{ name: 'acc', value: 0.9 }], steps: [{ name: 'load', status: 'succeeded', cached: false, duration: 1 }] };
  const b = { id: 'b', status: 'succeeded', parameters: { n: 2 }, metrics: { acc: 0.9 }, steps: [{ name: 'load', status: 'succeeded', cached: true, duration: 0 }] };
  const c = g.compareRuns(a, b);
  assert.deepEqual(c.parameters, [{ key: 'n', a: '1', b: '2', differs: true }]);
  assert.deepEqual(c.metrics, [{ key: 'acc', a: '0.9', b: '0.9', differs: false }]);
  assert.equal(c.steps[0].differs, true);
  assert.match(c.steps[0].b, /^cached/);
});

test('parseParamValue by declared type', () => {
  assert.equal(g.parseParamValue('int', '42'), 42);
  assert.throws(() => g.parseParamValue('int', '4.2'));
  assert.equal(g.parseParamValue('float', '0.5'), 0.5);
  assert.equal(g.parseParamValue('bool', '', true), true);
  assert.deepEqual(g.parseParamValue('list', '[1, 2]'), [1, 2]);
  assert.throws(() => g.parseParamValue('dict', '[1]'));
  assert.equal(g.parseParamValue('str', ' x '), ' x ');
  assert.equal(g.parseParamValue('NoneType', ''), null);
});
