// Test harness: runs a private LiveChat server (a copy of the debug binary, fresh data dir,
// random port) and Debian's Chromium through playwright-core.

import { spawn } from 'node:child_process';
import { copyFileSync, chmodSync, mkdirSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BROWSER_DIR = path.resolve(here, '..');
export const REPO = path.resolve(BROWSER_DIR, '..', '..');
export const WEB_DIR = path.join(REPO, 'web');
export const SCREENSHOT_DIR = path.join(BROWSER_DIR, 'screenshots');

export const DEFAULT_BIN = '/root/.cache/livechat/target/debug/livechat';
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** Upper bound of every wait in the tests (the machine is shared and loaded). */
export const WAIT = 15_000;

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/**
 * Starts the server. Returns {url, dataDir, logs(), stop()}.
 * The binary is copied first: others rebuild it in place while the tests run.
 */
export async function startServer({ env = {} } = {}) {
  const src = process.env.LIVECHAT_BIN || DEFAULT_BIN;
  if (!existsSync(src)) throw new Error(`LiveChat binary not found at ${src} (set LIVECHAT_BIN)`);
  const root = mkdtempSync(path.join(tmpdir(), 'livechat-browser-'));
  const bin = path.join(root, 'livechat');
  copyFileSync(src, bin);
  chmodSync(bin, 0o755);
  const dataDir = path.join(root, 'data');
  mkdirSync(dataDir);

  const child = spawn(bin, ['--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env: {
      ...process.env,
      LIVECHAT_INGRESS__WEB_DIR: WEB_DIR,
      LIVECHAT_LIMITS__LOGIN_ATTEMPTS_PER_IP_PER_MINUTE: '100000',
      LIVECHAT_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE: '100000',
      LIVECHAT_LIMITS__SEND_RATE_PER_SEC: '1000',
      LIVECHAT_LIMITS__SEND_BURST: '1000',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);

  const logLines = [];
  const keep = (line) => {
    logLines.push(line);
    if (logLines.length > 400) logLines.shift();
  };
  createInterface({ input: child.stderr }).on('line', keep);

  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      running.delete(child);
      resolve(exited);
    });
  });

  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start within 30 s\n${logLines.join('\n')}`)), 30_000);
    const rl = createInterface({ input: child.stdout });
    let first = true;
    rl.on('line', (line) => {
      keep(line);
      if (!first) return;
      first = false;
      const m = /^LiveChat listening on (http:\/\/\S+)/.exec(line);
      clearTimeout(timer);
      if (m) resolve(m[1].replace(/\/$/, ''));
      else reject(new Error(`unexpected first line from the server: ${line}`));
    });
    exitPromise.then((e) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (${JSON.stringify(e)})\n${logLines.join('\n')}`));
    });
  });

  return {
    url,
    dataDir,
    logs: () => logLines.join('\n'),
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => { if (!exited) child.kill('SIGKILL'); }, 5000);
        await exitPromise;
        clearTimeout(t);
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
}

/**
 * A fresh browser context (= one user) with one page. Page errors and console errors are
 * collected in `errors` so a test can assert that the client ran cleanly.
 */
export async function newUser(browser, baseURL, name, { viewport = { width: 1280, height: 800 }, touch = false } = {}) {
  const context = await browser.newContext({ baseURL, viewport, reducedMotion: 'reduce', hasTouch: touch, isMobile: touch });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`[${name}] page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`[${name}] console: ${m.text()}`);
  });
  page.on('dialog', (d) => {
    errors.push(`[${name}] unexpected dialog: ${d.type()} ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  return { name, context, page, errors };
}

export async function screenshot(page, file, { fullPage = false } = {}) {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, file), fullPage });
}

/**
 * Polls `fn` (async, returns a value) until `check(value)` holds; returns the last value.
 * Throws with the last value in the message on timeout.
 */
export async function until(fn, check, { timeout = WAIT, interval = 100, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (check(last)) return last;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}; last value: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}
