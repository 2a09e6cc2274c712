// Unit tests of the tag editing logic (src/tags.ts), compiled by `tsc -p tsconfig.test.json`.
const test = require('node:test');
const assert = require('node:assert/strict');
const t = require('../test-build/tags.js');

test('parseTags reads ours and Kale aliases', () => {
  const s = t.parseTags(['block:load', 'prev:init', 'imports', 'limit:cpu:2', 'limit:nvidia.com/gpu:1', 'cache:disabled', 'mine']);
  assert.equal(s.step, 'load');
  assert.deepEqual(s.after, ['init']);
  assert.equal(s.flags.setup, true);
  assert.equal(s.options.cpu, '2');
  assert.equal(s.options.gpu, '1');
  assert.equal(s.options.cache, 'off');
  assert.deepEqual(s.other, ['mine']);
});

test('setStep sets, replaces (block: too) and clears, keeping other tags in place', () => {
  assert.deepEqual(t.setStep([], 'load'), ['step:load']);
  assert.deepEqual(t.setStep(['a', 'step:old', 'b'], 'new'), ['a', 'step:new', 'b']);
  assert.deepEqual(t.setStep(['block:old', 'x'], 'new'), ['step:new', 'x']);
  assert.deepEqual(t.setStep(['step:a', 'step:b', 'x'], null), ['x']);
  assert.deepEqual(t.setStep(['step:a', 'x'], ''), ['x']);
});

test('setAfter replaces after:/prev: and removes duplicates', () => {
  assert.deepEqual(t.setAfter(['prev:a', 'step:c'], ['a', 'b', 'a', ' ']), ['step:c', 'after:a', 'after:b']);
  assert.deepEqual(t.setAfter(['after:a'], []), []);
});

test('setFlag adds our spelling, keeps an alias, clears every alias', () => {
  assert.deepEqual(t.setFlag([], 'setup', true), ['setup']);
  assert.deepEqual(t.setFlag(['imports'], 'setup', true), ['imports']);
  assert.deepEqual(t.setFlag(['imports', 'functions', 'setup', 'x'], 'setup', false), ['x']);
  assert.deepEqual(t.setFlag(['pipeline-parameters'], 'parameters', false), []);
  assert.deepEqual(t.setFlag(['pipeline-metrics'], 'metrics', false), []);
  assert.deepEqual(t.setFlag([], 'skip', true), ['skip']);
});

test('setOption replaces any spelling, Kale limit: included, and clears', () => {
  assert.deepEqual(t.setOption(['limit:cpu:2', 'x'], 'cpu', '4'), ['cpu:4', 'x']);
  assert.deepEqual(t.setOption(['limit:memory:1Gi'], 'memory', '2Gi'), ['memory:2Gi']);
  assert.deepEqual(t.setOption(['limit:nvidia.com/gpu:1'], 'gpu', null), []);
  assert.deepEqual(t.setOption([], 'image', 'python:3.11'), ['image:python:3.11']);
  assert.deepEqual(t.setOption(['cache:disabled'], 'cache', 'off'), ['cache:off']);
  assert.deepEqual(t.setOption(['cache:off'], 'cache', ''), []);
  assert.deepEqual(t.setOption(['timeout:10'], 'retries', '2'), ['timeout:10', 'retries:2']);
});

test('optionOf splits image references on the first colon only', () => {
  assert.deepEqual(t.optionOf('image:repo/name:tag'), ['image', 'repo/name:tag']);
  assert.equal(t.optionOf('limit:foo:1'), null);
  assert.equal(t.optionOf('step:x'), null);
});

test('applyState round-trips and keeps foreign tags', () => {
  const tags = ['nbval-ignore-output', 'block:train', 'pipeline-metrics', 'limit:cpu:2'];
  const state = t.parseTags(tags);
  assert.deepEqual(t.applyState(tags, state), tags);
  state.step = 'fit';
  state.flags.metrics = false;
  state.options.cpu = undefined;
  state.options.timeout = '60';
  assert.deepEqual(t.applyState(tags, state), ['nbval-ignore-output', 'step:fit', 'timeout:60']);
});

test('tagMeaning explains Kale aliases', () => {
  assert.match(t.tagMeaning('block:a'), /Kale alias of step/);
  assert.match(t.tagMeaning('prev:a'), /Kale alias of after/);
  assert.match(t.tagMeaning('pipeline-parameters'), /Kale alias of parameters/);
  assert.match(t.tagMeaning('pipeline-metrics'), /Kale alias of metrics/);
  assert.match(t.tagMeaning('imports'), /Kale alias of setup/);
  assert.match(t.tagMeaning('functions'), /Kale alias of setup/);
  assert.match(t.tagMeaning('limit:cpu:2'), /Kale alias: step option cpu = 2/);
  assert.match(t.tagMeaning('volume:x'), /ignored/);
  assert.match(t.tagMeaning('step:a'), /starts step a/);
  assert.match(t.tagMeaning('cache:off'), /caching off/);
  assert.equal(t.tagMeaning('foo'), 'not an nb2pipe tag');
});

test('checkStepName follows the server rule', () => {
  assert.equal(t.checkStepName('load_data-2'), null);
  assert.ok(t.checkStepName('2load'));
  assert.ok(t.checkStepName('a b'));
  assert.ok(t.checkStepName('x'.repeat(64)));
});

test('stepNames lists steps in order of first use', () => {
  assert.deepEqual(t.stepNames([['step:a'], [], ['block:b'], ['step:a']]), ['a', 'b']);
});
