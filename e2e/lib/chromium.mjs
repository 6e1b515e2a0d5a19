// Headless Debian chromium driven by playwright-core, for tests of the pages as a person sees
// them: sign in, screenshots at desktop and phone widths, an OAuth provider for the MCP SDK
// whose "user" clicks through the real consent page, and the loopback server that receives
// the authorization callback, as a native MCP client's would.

import http from 'node:http';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { HeadlessOAuthProvider } from './mcp-oauth.mjs';
import { freePort } from './server.mjs';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SCREENSHOT_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'output', 'screenshots');
export const WIDTHS = [1280, 390];

export function launchChromium() {
  // --no-sandbox: CI runs as root, where chromium refuses its sandbox.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}

/** Writes `<name>-<width>.png` of the whole page at each width, then restores 1280 px. */
export async function screenshot(page, name) {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: WIDTHS[0], height: 900 });
}

/** Signs in through the login page; leaves the page wherever the login redirected. */
export async function signIn(page, baseUrl, email, password) {
  await page.goto(`${baseUrl}/login`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/login')), page.getByRole('button', { name: 'Sign in' }).click()]);
}

/**
 * A loopback HTTP server standing in for a native app's redirect URI: it answers every
 * request with a short page and records the URLs it was sent to.
 */
export async function callbackServer() {
  const port = await freePort();
  const hits = [];
  const waiting = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    // Chromium also asks this origin for /favicon.ico once the page has loaded, at a moment
    // that depends on load: only the callback itself counts as a hit.
    if (url.pathname !== '/callback') {
      res.writeHead(404).end();
      return;
    }
    hits.push(url);
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<p>Signed in. You can close this window.</p>');
    while (waiting.length) waiting.shift()(url);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    redirectUri: `http://127.0.0.1:${port}/callback`,
    hits,
    next: () => new Promise((resolve) => waiting.push(resolve)),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/**
 * The MCP SDK's OAuthClientProvider, with a person in chromium: when the SDK sends the user
 * to the authorization server, the (already signed-in) chromium page opens the URL, `onConsent`
 * inspects the real consent page, and the Authorize button is clicked; the browser then
 * lands on the loopback callback server.
 */
export class ChromiumOAuthProvider extends HeadlessOAuthProvider {
  constructor({ gh, page, callback, clientName, onConsent }) {
    super({ gh, redirectUri: callback.redirectUri, clientName });
    this.page = page;
    this.callback = callback;
    this.onConsent = onConsent;
    /** Set to refuse further authorizations (the test expects none). */
    this.refuse = false;
  }

  async redirectToAuthorization(authorizationUrl) {
    if (this.refuse) throw new Error(`unexpected authorization request: ${authorizationUrl}`);
    const url = new URL(authorizationUrl);
    this.authorizationUrls.push(url);
    const landed = this.callback.next();
    await this.page.goto(url.toString());
    await this.onConsent?.(this.page);
    await this.page.getByRole('button', { name: 'Authorize' }).click();
    const callback = await landed;
    if (this._state !== undefined && callback.searchParams.get('state') !== this._state) {
      throw new Error(`state mismatch in callback ${callback}`);
    }
    this.callbacks.push(callback);
  }
}
