/**
 * nb2pipe.widgets.RunView in a notebook (another part of nb2pipe writes it): skipped when the
 * module is not there.
 */
import { expect, test } from '@jupyterlab/galata';
import * as fs from 'fs';
import * as path from 'path';

import { collectErrors } from './helpers';

const ROOT = path.resolve(__dirname, '..', '..', '..', 'nb2pipe');
const hasWidgets =
  fs.existsSync(path.join(ROOT, 'widgets.py')) || fs.existsSync(path.join(ROOT, 'widgets', '__init__.py'));

test.use({ autoGoto: false });

test('RunView renders in a notebook', async ({ page, tmpPath }) => {
  test.skip(!hasWidgets, 'nb2pipe.widgets is not there yet');
  const errors = collectErrors(page);
  await page.goto();
  await page.notebook.createNew('widgets.ipynb');
  await page.notebook.setCell(0, 'code', 'from nb2pipe.widgets import RunView\nprint("RunView imported", RunView.__name__)');
  await page.notebook.runCell(0);
  await expect(page.locator('.jp-OutputArea-output', { hasText: 'RunView imported RunView' })).toBeVisible({ timeout: 60000 });
  expect(errors).toEqual([]);
  void tmpPath;
});
