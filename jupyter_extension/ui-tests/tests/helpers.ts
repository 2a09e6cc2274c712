import { expect, IJupyterLabPageFixture } from '@jupyterlab/galata';
import type { Page } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';

export const NOTEBOOKS = path.resolve(__dirname, '..', 'notebooks');
export const SCREENSHOTS = path.resolve(__dirname, '..', 'screenshots');

/**
 * Console errors and page errors seen by the page; the tests fail when there is one.
 * One environmental cause is left out: Chromium aborts requests with ERR_NETWORK_CHANGED when the
 * host's network interfaces change (e.g. Docker creating a bridge while other tests run); the
 * "Failed to fetch" that JupyterLab's core then throws is left out too, unless it comes from nb2pipe.
 */
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  let networkChanged = false;
  page.on('console', msg => {
    if (msg.type() === 'error') {
      if (msg.text().includes('net::ERR_NETWORK_CHANGED')) {
        networkChanged = true;
        console.warn(`ignored (environment): ${msg.text()}`);
        return;
      }
      errors.push(`console.error: ${msg.text()}`);
    }
  });
  // name the request behind a "Failed to load resource" console error
  page.on('response', r => {
    if (r.status() >= 400 && r.url().includes('/nb2pipe/')) {
      errors.push(`http ${r.status()} ${r.request().method()} ${r.url()}`);
    }
  });
  page.on('pageerror', err => {
    const stack = err.stack || '';
    if (networkChanged && err.message === 'Failed to fetch' && !stack.includes('extensions/nb2pipe/')) {
      console.warn(`ignored (environment): ${err.message}`);
      return;
    }
    errors.push(`pageerror: ${err.message}\n${stack.split('\n').slice(0, 8).join('\n')}`);
  });
  return errors;
}

/** Upload a test notebook into the test's folder on the server and open it. */
export async function openNotebook(
  page: IJupyterLabPageFixture,
  tmpPath: string,
  name: string
): Promise<string> {
  const target = `${tmpPath}/${name}`;
  await page.contents.uploadFile(path.join(NOTEBOOKS, name), target);
  await page.notebook.openByPath(target);
  await page.notebook.activate(name);
  return target;
}

export async function command(page: Page, id: string, args: any = {}): Promise<any> {
  return page.evaluate(
    ({ id, args }) => (window as any).jupyterapp.commands.execute(id, args),
    { id, args }
  );
}

export async function openPanel(page: IJupyterLabPageFixture) {
  await command(page, 'nb2pipe:open-panel');
  const panel = page.locator('#nb2pipe-panel');
  await expect(panel).toBeVisible();
  return panel;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, name) });
}

export function node(page: Page, step: string) {
  return page.locator(`#nb2pipe-panel .nb2pipe-node[data-step="${step}"]`);
}
