/**
 * nb2pipe in JupyterLab: tag a cell through the UI, see the DAG, run it and watch every node
 * succeed, open an executed step notebook, run history and compare, cancel a long run, download
 * the Kubeflow YAML. Screenshots in the light and dark themes go to ../screenshots/.
 * Every test fails on a browser console error or page error.
 */
import { expect, test } from '@jupyterlab/galata';
import * as fs from 'fs';

import { collectErrors, command, node, openNotebook, openPanel, screenshot, SCREENSHOTS } from './helpers';

test.use({ autoGoto: false });

let errors: string[] = [];

test.beforeEach(async ({ page }) => {
  errors = collectErrors(page);
  await page.goto();
});

test.afterEach(() => {
  expect(errors, 'browser console errors').toEqual([]);
});

test('tag a cell, see the DAG, run it, open an executed step notebook', async ({ page, tmpPath }) => {
  await openNotebook(page, tmpPath, 'quick.ipynb');
  const panel = await openPanel(page);

  // the DAG of the three tagged steps, laid out by dagre, with the plan before a run
  for (const s of ['load', 'square', 'total']) {
    await expect(node(page, s)).toBeVisible();
    await expect(node(page, s)).toHaveAttribute('data-status', /would-run|cached/);
  }
  await expect(panel.locator('.nb2pipe-plan li')).toHaveCount(3);
  await expect(panel.locator('.nb2pipe-param')).toHaveCount(3);
  // badges on the notebook
  await expect(page.locator('.jp-Cell .nb2pipe-badge-step', { hasText: 'load' })).toBeVisible();
  await expect(page.locator('.jp-Cell .nb2pipe-role-parameters')).toBeVisible();

  // tag the last cell as step "report" through the step editor (notebook toolbar button)
  await page.notebook.selectCells(5);
  await page.locator('.jp-NotebookPanel-toolbar .nb2pipe-toolbar-tag').click();
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog.locator('.nb2pipe-editor')).toBeVisible();
  await dialog.locator('input.nb2pipe-editor-step').fill('report');
  await screenshot(page, 'step-editor-light.png');
  await dialog.locator('.jp-Dialog-button.jp-mod-accept').click();
  await expect(node(page, 'report')).toBeVisible({ timeout: 15000 });
  await expect(page.locator('.jp-Cell .nb2pipe-badge-step', { hasText: 'report' })).toBeVisible();
  const tags = await page.evaluate(() => {
    const nb = (window as any).jupyterapp.shell.currentWidget.content;
    return nb.widgets[5].model.getMetadata('tags');
  });
  expect(tags).toEqual(['step:report']);
  await screenshot(page, 'dag-light.png');

  // run: every node turns succeeded
  await panel.locator('button[data-action="run"]').click();
  for (const s of ['load', 'square', 'total', 'report']) {
    await expect(node(page, s)).toHaveAttribute('data-status', 'succeeded', { timeout: 90000 });
  }
  await expect(panel.locator('.nb2pipe-run-row')).toHaveCount(1, { timeout: 10000 });

  // node detail: outputs with type and size, log, the executed notebook
  await node(page, 'square').click();
  const detail = panel.locator('.nb2pipe-detail');
  await expect(detail).toHaveAttribute('data-step', 'square');
  await expect(detail.locator('.nb2pipe-inputs [data-artifact="data"]')).toContainText('builtins.list');
  await expect(detail.locator('.nb2pipe-outputs [data-artifact="squares"]')).toContainText('B');
  await node(page, 'report').click();
  await expect(detail).toHaveAttribute('data-step', 'report');
  await expect(detail.locator('pre.nb2pipe-log')).toContainText('total=', { timeout: 10000 });
  await screenshot(page, 'run-succeeded-light.png');
  await detail.locator('button[data-action="open-executed"]').click();
  const executed = page.locator('.jp-NotebookPanel.nb2pipe-executed');
  await expect(executed).toBeVisible({ timeout: 20000 });
  await expect(executed.locator('.jp-Cell').first()).toBeVisible();
  await expect(executed.locator('.jp-OutputArea-output', { hasText: 'total=' }).first()).toBeVisible();
  await screenshot(page, 'executed-notebook-light.png');
});

test('problems on cells, events, artifacts, load into kernel, run from here, run this step', async ({ page, tmpPath }) => {
  await openNotebook(page, tmpPath, 'quick.ipynb');
  const panel = await openPanel(page);
  await expect(node(page, 'total')).toBeVisible();

  // an invalid step name: the problem shows on its cell and in the panel
  await command(page, 'nb2pipe:tag-step', { name: 'bad name', index: 5 });
  const cellProblem = page.locator('.jp-Cell .nb2pipe-cell-problems');
  await expect(cellProblem).toBeVisible({ timeout: 15000 });
  await expect(cellProblem).toContainText('bad name');
  await expect(panel.locator('.nb2pipe-problems li').first()).toBeVisible();
  await screenshot(page, 'problem-light.png');
  await command(page, 'nb2pipe:tag-step', { name: null, index: 5 });
  await expect(cellProblem).toHaveCount(0, { timeout: 15000 });
  await expect(node(page, 'total')).toBeVisible();

  await command(page, 'nb2pipe:run');
  for (const s of ['load', 'square', 'total']) {
    await expect(node(page, s)).toHaveAttribute('data-status', 'succeeded', { timeout: 90000 });
  }
  // the statuses came through jupyter_server's event bus
  expect(Number(await panel.getAttribute('data-events'))).toBeGreaterThan(0);

  // artifacts: download one, load one into the kernel
  await node(page, 'square').click();
  const detail = panel.locator('.nb2pipe-detail');
  const downloaded = page.waitForEvent('download');
  await detail.locator('.nb2pipe-outputs [data-artifact="squares"] button[data-action="download-artifact"]').click();
  expect((await downloaded).suggestedFilename()).toBe('squares');
  const runId = await panel.locator('.nb2pipe-run-line').getAttribute('data-run-id');
  await page.notebook.selectCells(3);
  await detail.locator('.nb2pipe-inputs [data-artifact="data"] button[data-action="load-artifact"]').click();
  const source = await page.evaluate(() => {
    const nb = (window as any).jupyterapp.shell.currentWidget.content;
    return nb.activeCell.model.sharedModel.getSource();
  });
  expect(source).toContain(`data = nb2pipe.load("data", run="${runId}")`);
  expect(await page.evaluate(() => (window as any).jupyterapp.shell.currentWidget.content.activeCellIndex)).toBe(4);

  // run from here: square and what follows it run again
  await node(page, 'square').click();
  await panel.locator('button[data-action="run-from"]').click();
  await expect(panel.locator('.nb2pipe-run-row')).toHaveCount(2, { timeout: 15000 });
  await expect(node(page, 'total')).toHaveAttribute('data-status', 'succeeded', { timeout: 90000 });
  await expect(node(page, 'square')).toHaveAttribute('data-status', 'succeeded');
  // run this step
  await node(page, 'total').click();
  await panel.locator('button[data-action="run-step"]').click();
  await expect(panel.locator('.nb2pipe-run-row')).toHaveCount(3, { timeout: 15000 });
  await expect(node(page, 'total')).toHaveAttribute('data-status', 'succeeded', { timeout: 90000 });
});

test('history, compare and dark theme', async ({ page, tmpPath }) => {
  await openNotebook(page, tmpPath, 'quick.ipynb');
  const panel = await openPanel(page);
  await expect(node(page, 'total')).toBeVisible();
  await command(page, 'nb2pipe:run');
  await expect(node(page, 'total')).toHaveAttribute('data-status', 'succeeded', { timeout: 90000 });
  // change a parameter: the plan says what would re-run
  await expect(panel.locator('.nb2pipe-run-row')).toHaveCount(1, { timeout: 10000 });
  await panel.locator('button[data-action="show-plan"]').click();
  const n = panel.locator('.nb2pipe-param[data-param="n"] input');
  await n.fill('6');
  await n.dispatchEvent('change');
  await expect(node(page, 'load')).toHaveAttribute('data-status', 'would-run', { timeout: 10000 });
  await panel.locator('button[data-action="run"]').click();
  await expect(node(page, 'total')).toHaveAttribute('data-status', 'succeeded', { timeout: 90000 });
  await expect(panel.locator('.nb2pipe-run-row')).toHaveCount(2, { timeout: 10000 });
  const boxes = panel.locator('.nb2pipe-run-row input[type="checkbox"]');
  await boxes.nth(0).check();
  await boxes.nth(1).check();
  await panel.locator('button[data-action="compare"]').click();
  await expect(panel.locator('.nb2pipe-compare-table')).toBeVisible();
  await expect(panel.locator('.nb2pipe-compare-table tr.nb2pipe-differs', { hasText: 'n' }).first()).toBeVisible();
  await screenshot(page, 'history-compare-light.png');
  await panel.locator('.nb2pipe-compare').screenshot({ path: require('path').join(SCREENSHOTS, 'compare-light.png') });
  await page.theme.setDarkTheme();
  await node(page, 'load').click();
  await screenshot(page, 'history-compare-dark.png');
  await panel.locator('.nb2pipe-compare').screenshot({ path: require('path').join(SCREENSHOTS, 'compare-dark.png') });
  await page.theme.setLightTheme();
});

test('a long run: reload reattaches to it, cancel it', async ({ page, tmpPath }) => {
  const target = await openNotebook(page, tmpPath, 'slow.ipynb');
  let panel = await openPanel(page);
  await expect(node(page, 'wait')).toBeVisible();
  await panel.locator('button[data-action="run"]').click();
  await expect(node(page, 'wait')).toHaveAttribute('data-status', 'running', { timeout: 60000 });

  // reload the page: the layout restorer reopens the notebook, the panel finds the live run
  await page.reload({ waitForIsReady: false });
  await page.waitForFunction(() => typeof (window as any).jupyterapp === 'object');
  await page.evaluate(() => (window as any).jupyterapp.started);
  await page.locator('#jupyterlab-splash').waitFor({ state: 'detached' });
  if (!(await page.locator('.jp-NotebookPanel').count())) {
    await command(page, 'docmanager:open', { path: target });
  }
  await expect(page.locator('.jp-NotebookPanel')).toBeVisible();
  panel = await openPanel(page);
  await expect(node(page, 'wait')).toHaveAttribute('data-status', 'running', { timeout: 20000 });
  await expect(node(page, 'prep')).toHaveAttribute('data-status', 'succeeded');

  // the live log of the running step
  await node(page, 'wait').click();
  await expect(panel.locator('.nb2pipe-detail pre.nb2pipe-log')).toContainText('waiting', { timeout: 15000 });
  await page.theme.setDarkTheme();
  await screenshot(page, 'running-dark.png');
  await panel.locator('button[data-action="cancel"]').click();
  await expect(node(page, 'wait')).toHaveAttribute('data-status', 'cancelled', { timeout: 30000 });
  await expect(node(page, 'after_wait')).toHaveAttribute('data-status', /cancelled|skipped/);
  await expect(panel.locator('.nb2pipe-run-line')).toHaveAttribute('data-run-status', 'cancelled', { timeout: 10000 });
  await screenshot(page, 'cancelled-dark.png');
  await page.theme.setLightTheme();
});

test('the commands are there; export to Kubeflow downloads the YAML', async ({ page, tmpPath }) => {
  for (const id of ['nb2pipe:open-panel', 'nb2pipe:run', 'nb2pipe:cancel', 'nb2pipe:export-kfp', 'nb2pipe:tag-step']) {
    expect(await page.evaluate(id => (window as any).jupyterapp.commands.hasCommand(id), id)).toBe(true);
  }
  await openNotebook(page, tmpPath, 'quick.ipynb');
  const panel = await openPanel(page);
  await expect(node(page, 'total')).toBeVisible();
  const downloaded = page.waitForEvent('download');
  await panel.locator('button[data-action="export"]').click();
  const download = await downloaded;
  expect(download.suggestedFilename()).toMatch(/\.ya?ml$/);
  const file = await download.path();
  const text = fs.readFileSync(file!, 'utf-8');
  expect(text).toMatch(/pipelineInfo|deploymentSpec|components/);
  // the command does the same
  const again = page.waitForEvent('download');
  await command(page, 'nb2pipe:export-kfp');
  expect((await again).suggestedFilename()).toBe('quick.yaml');
});

