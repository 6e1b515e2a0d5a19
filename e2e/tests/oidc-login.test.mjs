// Sign-in through the organisation's identity provider, with real parts: oidc-provider (a
// certified OpenID Provider) on loopback as the IdP, headless chromium as the person, and MCP
// SDK clients authorized through Gatehouse's consent page. The person's groups at the IdP decide
// their workspaces at each sign-in; a workspace taken away stops that workspace's grant.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ChromiumOAuthProvider, callbackServer, launchChromium, screenshot } from '../lib/chromium.mjs';
import { prepareIdp, signInAtIdp } from '../lib/idp.mjs';
import { toolText, within } from '../lib/mcp-oauth.mjs';
import { backends, startGatehouse, withLogs } from '../lib/server.mjs';

const STEP_MS = 60_000;
const CLIENT_INFO = { name: 'gatehouse-e2e-oidc', version: '0.0.0' };

/** An SDK client on a transport whose every HTTP status is recorded in `statuses`. */
function recordingClient(url, authProvider) {
  const statuses = [];
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    authProvider,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      statuses.push(res.status);
      return res;
    },
  });
  return { client: new Client(CLIENT_INFO), transport, statuses };
}

for (const [index, backend] of backends().entries()) {
  describe(`sign-in with the organisation's IdP [${backend}]`, () => {
    let gh;
    let idp;
    let browser;
    let page;
    let callback;
    const open = new Set();
    // One set of screenshots is enough: taken on the first backend.
    const shot = (p, name) => (index === 0 ? screenshot(p, name) : Promise.resolve());
    const t_ = (name, fn) => test(name, { timeout: 4 * STEP_MS }, withLogs(() => gh, fn));

    /** Connects an SDK client to `mcpUrl`, the person signing in at the IdP if Gatehouse asks. */
    async function authorizedClient(mcpUrl, clientName) {
      const provider = new ChromiumOAuthProvider({
        gh,
        page,
        callback,
        clientName,
        onConsent: async (p) => {
          if (new URL(p.url()).pathname === '/login') {
            await shot(p, 'login-oidc');
            await signInAtIdp(p, { gatehouseUrl: gh.url, issuer: idp.issuer, login: 'carol' });
          }
          await p.getByRole('button', { name: 'Authorize' }).waitFor();
        },
      });
      const first = recordingClient(mcpUrl, provider);
      await assert.rejects(within(STEP_MS, first.client.connect(first.transport), 'connect'), UnauthorizedError);
      await first.client.close().catch(() => {});
      await within(STEP_MS, first.transport.finishAuth(provider.lastCode), 'finishAuth');
      const sdk = { ...recordingClient(mcpUrl, provider), provider };
      open.add(sdk.client);
      await within(STEP_MS, sdk.client.connect(sdk.transport), 'connect with tokens');
      return sdk;
    }

    async function workspacesOnHome() {
      await page.goto(`${gh.url}/`);
      await page.getByRole('heading', { name: 'Your workspaces' }).waitFor();
      return page.locator('input[aria-label^="MCP URL of"]').evaluateAll((inputs) => inputs.map((i) => i.value));
    }

    before(async () => {
      idp = await prepareIdp({
        accounts: { carol: { email: 'carol@corp.example', groups: ['engineering', 'research'] } },
        groupRoles: [
          { group: 'engineering', workspace: 'default' },
          { group: 'research', workspace: 'other' },
        ],
      });
      gh = await startGatehouse({ backend, env: idp.gatehouseEnv });
      await gh.cli(['upstream', 'add', 'other', 'demo', '--builtin', 'demo']);
      await idp.listen(gh.url);
      browser = await launchChromium();
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      // The development pages of oidc-provider import a web font; there is no network here.
      await context.route(/fonts\.googleapis\.com/, (route) => route.abort());
      page = await context.newPage();
      callback = await callbackServer();
    });
    after(async () => {
      for (const c of open) await c.close().catch(() => {});
      await browser?.close();
      await callback?.close();
      await gh?.stop();
      await idp?.stop();
    });

    let inDefault;
    let inOther;

    t_('a person signs in at the IdP from the consent flow of an MCP client, authorizes it and calls a tool', async () => {
      inDefault = await authorizedClient(gh.mcpUrl, 'OIDC e2e client (default)');
      const sum = await within(STEP_MS, inDefault.client.callTool({ name: 'add', arguments: { a: 2, b: 3 } }), 'add');
      assert.equal(toolText(sum), '5');
      assert.equal(idp.tokenRequests.ok, 1, 'Gatehouse redeemed one code at the IdP');
      // The account was created at first sign-in, with the workspaces its groups give.
      assert.deepEqual(await workspacesOnHome(), [gh.mcpUrl, gh.otherMcpUrl]);
      assert.match(await page.locator('body').innerText(), /carol@corp\.example/);
      inOther = await authorizedClient(gh.otherMcpUrl, 'OIDC e2e client (other)');
      const other = await within(STEP_MS, inOther.client.callTool({ name: 'add', arguments: { a: 1, b: 1 } }), 'add');
      assert.equal(toolText(other), '2');
      assert.equal(idp.tokenRequests.ok, 1, 'the second authorization reused the Gatehouse session');
    });

    t_('a group taken away at the IdP removes the workspace at the next sign-in, and its grant stops working', async () => {
      idp.accounts.carol.groups = ['engineering'];
      // Sign out of Gatehouse, and in again (the IdP still has its own session).
      await page.goto(`${gh.url}/`);
      await Promise.all([page.waitForURL((u) => u.pathname === '/login'), page.getByRole('button', { name: 'Sign out' }).click()]);
      assert.equal((await page.goto(`${gh.url}/`)).url(), `${gh.url}/login`, 'signed out');
      await signInAtIdp(page, { gatehouseUrl: gh.url, issuer: idp.issuer, login: 'carol' });
      assert.equal(idp.tokenRequests.ok, 2);
      assert.deepEqual(await workspacesOnHome(), [gh.mcpUrl], 'only the workspace the remaining group gives');
      assert.match(gh.logs(), /kind="member_removed"|kind=member_removed/, 'the removal is in the audit log');

      // The removed workspace's app is refused on its next request (its grant was revoked), and
      // its refresh token no longer works either; the SDK would send the person to sign in.
      inOther.provider.refuse = true;
      const before401 = inOther.statuses.length;
      await assert.rejects(within(STEP_MS, inOther.client.callTool({ name: 'add', arguments: { a: 1, b: 1 } }), 'add'));
      assert.ok(inOther.statuses.slice(before401).includes(401), `statuses: ${inOther.statuses.slice(before401)}`);
      // The workspace the person keeps goes on working.
      const still = await within(STEP_MS, inDefault.client.callTool({ name: 'add', arguments: { a: 4, b: 5 } }), 'add');
      assert.equal(toolText(still), '9');
    });

    t_('declining at the IdP shows a clear page and signs nobody in', async () => {
      await page.goto(`${gh.url}/`);
      await Promise.all([page.waitForURL((u) => u.pathname === '/login'), page.getByRole('button', { name: 'Sign out' }).click()]);
      // Forget the IdP's own session too, so that it asks again.
      await page.context().clearCookies();
      await page.goto(`${gh.url}/login`);
      await page.getByRole('link', { name: 'Continue with Corp IdP' }).click();
      await page.waitForURL((u) => u.href.startsWith(idp.issuer));
      await Promise.all([page.waitForURL((u) => u.href.startsWith(gh.url)), page.getByRole('link', { name: '[ Cancel ]' }).click()]);
      assert.match(await page.locator('h1').innerText(), /Corp IdP did not sign you in/);
      assert.match(await page.locator('body').innerText(), /access_denied/);
      await shot(page, 'oidc-denied');
      assert.equal((await page.goto(`${gh.url}/`)).url(), `${gh.url}/login`, 'nobody is signed in');
      assert.match(gh.logs(), /denied at the provider/);
    });
  });
}
