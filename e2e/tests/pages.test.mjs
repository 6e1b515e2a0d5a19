// The pages for people, in headless Debian chromium (playwright-core), against the real binary:
//   - an owner signs in, authorizes an MCP SDK client through the real consent page, sees it
//     under Connected apps and Sessions, revokes it, and the client's next MCP request gets 401;
//   - creates a machine token (copied with the copy button) and calls a tool with it;
//   - adds an HTTP upstream (an MCP SDK server started here) and sees its tools;
//   - a member without the owner role gets 403 on owner pages and never sees others' apps.
// Every page is photographed at 1280 and 390 px into e2e/output/screenshots/<page>-<width>.png.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { ChromiumOAuthProvider, callbackServer, launchChromium, screenshot, signIn } from '../lib/chromium.mjs';
import { HeadlessOAuthProvider, toolText, within } from '../lib/mcp-oauth.mjs';
import { backends, freePort, startGatehouse, withLogs } from '../lib/server.mjs';

const STEP_MS = 60_000;
const CLIENT_INFO = { name: 'gatehouse-e2e-pages', version: '0.0.0' };
const OWNER = 'owen@example.com';
const OWNER_PASSWORD = 'owner-password-123';

/** An MCP server over Streamable HTTP (stateless) with one tool, `forecast`. */
async function weatherUpstream() {
  const port = await freePort();
  const server = http.createServer(async (req, res) => {
    const mcp = new Server({ name: 'weather-upstream', version: '1.0.0' }, { capabilities: { tools: {} } });
    mcp.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: [
        {
          name: 'forecast',
          description: 'Tomorrow’s weather for a city',
          inputSchema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      ],
    }));
    mcp.setRequestHandler(CallToolRequestSchema, async (r) => ({
      content: [{ type: 'text', text: `Sunny in ${r.params.arguments?.city}` }],
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      transport.close();
      mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}/mcp`, close: () => new Promise((r) => server.close(r)) };
}

/** An SDK client on a transport whose every HTTP status is recorded in `statuses`. */
function recordingClient(url, opts = {}) {
  const statuses = [];
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    ...opts,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      statuses.push(res.status);
      return res;
    },
  });
  return { client: new Client(CLIENT_INFO), transport, statuses };
}

/** The table row (or phone card) of the list whose text contains `text`. */
function row(page, text) {
  return page.locator('table.list tbody tr', { hasText: text });
}

for (const [index, backend] of backends().entries()) {
  describe(`pages in chromium [${backend}]`, () => {
    let gh;
    let browser;
    let owner; // the owner's browser page
    let callback;
    let weather;
    const open = new Set();
    // One set of screenshots is enough: taken on the first backend.
    const shot = (page, name) => (index === 0 ? screenshot(page, name) : Promise.resolve());
    const t_ = (name, fn) => test(name, { timeout: 3 * STEP_MS }, withLogs(() => gh, fn));

    before(async () => {
      gh = await startGatehouse({ backend });
      await gh.cli(['user', 'add', OWNER, '--password-stdin'], `${OWNER_PASSWORD}\n`);
      await gh.cli(['workspace', 'member', 'add', 'default', OWNER, '--role', 'owner']);
      browser = await launchChromium();
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: gh.url });
      owner = await context.newPage();
      callback = await callbackServer();
      weather = await weatherUpstream();
    });
    after(async () => {
      for (const c of open) await c.close().catch(() => {});
      await browser?.close();
      await callback?.close();
      await weather?.close();
      await gh?.stop();
    });

    t_('a person signs in with the login page', async () => {
      await owner.goto(`${gh.url}/login`);
      await shot(owner, 'login');
      await owner.getByLabel('Email').fill(OWNER);
      await owner.getByLabel('Password').fill('not the password');
      await owner.getByRole('button', { name: 'Sign in' }).click();
      await assert.doesNotReject(owner.getByRole('alert').filter({ hasText: 'Wrong email or password' }).waitFor());

      await signIn(owner, gh.url, OWNER, OWNER_PASSWORD);
      assert.equal(new URL(owner.url()).pathname, '/');
      await owner.getByRole('heading', { name: 'Your workspaces' }).waitFor();
      assert.equal(await owner.locator('input[aria-label="MCP URL of Default"]').inputValue(), gh.mcpUrl);
      await shot(owner, 'home');
    });

    let sdk; // { client, transport, statuses, provider }

    t_('an MCP SDK client is authorized through the real consent page, and listed under Connected apps and Sessions', async () => {
      const seen = {};
      const provider = new ChromiumOAuthProvider({
        gh,
        page: owner,
        callback,
        clientName: 'Pages e2e client',
        onConsent: async (page) => {
          await page.getByRole('button', { name: 'Authorize' }).waitFor();
          seen.heading = await page.locator('h1').innerText();
          seen.host = await page.locator('.host').innerText();
          seen.warnings = await page.locator('.warning').allInnerTexts();
          seen.scopes = await page.locator('.scopes li').allInnerTexts();
          await shot(page, 'consent');
        },
      });
      const first = recordingClient(gh.mcpUrl, { authProvider: provider });
      await assert.rejects(within(STEP_MS, first.client.connect(first.transport), 'connect'), UnauthorizedError);
      await first.client.close().catch(() => {});
      assert.match(seen.heading, /Pages e2e client wants to use your Gatehouse workspace Default/);
      assert.equal(seen.host, '127.0.0.1', 'the redirect host is shown prominently');
      assert.ok(seen.warnings.some((w) => w.includes('Registered on the fly')), seen.warnings.join('|'));
      assert.ok(seen.warnings.some((w) => w.includes('localhost')), seen.warnings.join('|'));
      assert.ok(seen.scopes.some((s) => s.includes('Call tools on your behalf')), seen.scopes.join('|'));
      assert.equal(callback.hits.length, 1, 'chromium arrived at the loopback callback');
      await within(STEP_MS, first.transport.finishAuth(provider.lastCode), 'finishAuth');

      sdk = { ...recordingClient(gh.mcpUrl, { authProvider: provider }), provider };
      open.add(sdk.client);
      await within(STEP_MS, sdk.client.connect(sdk.transport), 'connect with tokens');
      const sum = await within(STEP_MS, sdk.client.callTool({ name: 'add', arguments: { a: 2, b: 3 } }), 'add');
      assert.equal(toolText(sum), '5');

      await owner.goto(`${gh.url}/w/default/apps`);
      const app = row(owner, 'Pages e2e client');
      await app.waitFor();
      assert.match(await app.innerText(), new RegExp(OWNER.replace('.', '\\.')));
      assert.match(await app.innerText(), /mcp:tools/);
      await shot(owner, 'apps');

      await owner.getByRole('link', { name: 'Sessions' }).click();
      await row(owner, 'Pages e2e client').waitFor();
      await shot(owner, 'sessions');
    });

    t_('revoking the app on Connected apps makes its very next MCP request get 401', async () => {
      await owner.goto(`${gh.url}/w/default/apps`);
      await row(owner, 'Pages e2e client').getByRole('button', { name: /^Revoke/ }).click();
      await owner.getByRole('status').filter({ hasText: 'disconnected' }).waitFor();
      assert.equal(await row(owner, 'Pages e2e client').count(), 0, 'the row is gone');

      sdk.provider.refuse = true; // no silent re-authorization: the person revoked it
      const before = sdk.statuses.length;
      await assert.rejects(within(STEP_MS, sdk.client.callTool({ name: 'add', arguments: { a: 1, b: 1 } }), 'add after revoke'));
      assert.equal(sdk.statuses[before], 401, `statuses after revoke: ${sdk.statuses.slice(before)}`);
      // And the token it holds is refused outright, with the challenge an MCP client expects.
      const res = await fetch(gh.mcpUrl, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${sdk.provider.tokens().access_token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      await res.arrayBuffer();
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      await sdk.client.close().catch(() => {});
      open.delete(sdk.client);
    });

    let machineToken;

    t_('a machine token is created on its page, copied with the copy button, and calls a tool', async () => {
      await owner.goto(`${gh.url}/w/default/tokens`);
      await owner.getByLabel(/^Name/).fill('nightly CI');
      assert.equal(await owner.getByLabel(/^Expires after/).inputValue(), '90', 'default expiry is 90 days');
      await owner.getByRole('button', { name: 'Create token' }).click();
      const shown = owner.locator('#new-token');
      await shown.waitFor();
      machineToken = await shown.inputValue();
      assert.match(machineToken, /^gh_mt_[A-Za-z0-9_-]{43}$/);
      await owner.locator('button[data-copy="new-token"]').click();
      assert.equal(await owner.evaluate(() => navigator.clipboard.readText()), machineToken, 'the copy button copied it');
      assert.match(await row(owner, 'nightly CI').innerText(), /active/);
      await shot(owner, 'tokens');

      await owner.goto(`${gh.url}/w/default/tokens`);
      assert.equal(await owner.locator('#new-token').count(), 0, 'shown once: not on the next visit');

      const { client, transport } = recordingClient(gh.mcpUrl, { requestInit: { headers: { authorization: `Bearer ${machineToken}` } } });
      open.add(client);
      await within(STEP_MS, client.connect(transport), 'connect with a machine token');
      const echo = await within(STEP_MS, client.callTool({ name: 'echo', arguments: { text: 'from CI' } }), 'echo');
      assert.equal(toolText(echo), 'from CI');
      await client.close();
      open.delete(client);
    });

    t_('an HTTP upstream is added on the Upstreams page, tested, and its tools are listed', async () => {
      await owner.goto(`${gh.url}/w/default/upstreams`);
      await owner.getByLabel(/^Name/).fill('weather');
      await owner.getByRole('radio', { name: /Streamable HTTP/ }).check();
      await owner.getByLabel(/^URL/).fill(weather.url);
      await owner.getByRole('button', { name: 'Add and test' }).click();
      await owner.waitForURL(/\/w\/default\/upstreams\/weather/);
      await owner.locator('.health', { hasText: 'healthy' }).first().waitFor();
      const tools = await owner.locator('table.list code').allInnerTexts();
      assert.deepEqual(tools, ['forecast']);
      assert.match(await owner.locator('dl.facts').innerText(), /weather-upstream 1\.0\.0/);
      await shot(owner, 'upstream');

      await owner.getByRole('link', { name: '← All upstreams' }).click();
      assert.match(await row(owner, 'weather').innerText(), /healthy\s+1 tool/);
      assert.match(await row(owner, 'demo').innerText(), /not tested yet/);
      await shot(owner, 'upstreams');

      // A new MCP session sees the merged tools.
      const { client, transport } = recordingClient(gh.mcpUrl, { requestInit: { headers: { authorization: `Bearer ${machineToken}` } } });
      open.add(client);
      await within(STEP_MS, client.connect(transport), 'connect');
      const { tools: listed } = await within(STEP_MS, client.listTools(), 'tools/list');
      assert.ok(listed.some((t) => t.name === 'weather__forecast'), listed.map((t) => t.name).join(', '));
      const sunny = await within(STEP_MS, client.callTool({ name: 'weather__forecast', arguments: { city: 'Oslo' } }), 'forecast');
      assert.equal(toolText(sunny), 'Sunny in Oslo');
      await client.close();
      open.delete(client);
    });

    t_('owners pre-register clients, add members and read the audit log', async () => {
      await owner.goto(`${gh.url}/w/default/clients`);
      assert.match(await row(owner, 'Pages e2e client').innerText(), /DCR/);
      await owner.getByLabel(/^Name/).fill('Reporting server');
      await owner.getByLabel(/^Redirect URIs/).fill('https://reports.example.com/oauth/callback');
      await owner.getByLabel(/Confidential/).check();
      await owner.getByRole('button', { name: 'Register client' }).click();
      assert.match(await owner.locator('#new-client-secret').inputValue(), /^gh_cs_/);
      assert.match(await row(owner, 'Reporting server').innerText(), /Pre-registered/);
      await shot(owner, 'clients');

      await owner.goto(`${gh.url}/w/default/members`);
      await owner.getByLabel(/^Email/).fill('bea@example.com');
      await owner.getByRole('button', { name: 'Add', exact: true }).click();
      assert.ok((await owner.locator('#new-password').inputValue()).length >= 16, 'a first password is shown once');
      assert.equal(await row(owner, 'bea@example.com').locator('select').inputValue(), 'member');
      await shot(owner, 'members');

      await owner.goto(`${gh.url}/w/default/audit`);
      const log = await owner.locator('table.list').innerText();
      for (const label of ['Signed in', 'Sign-in failed', 'App authorized', 'Tokens issued', 'App access revoked', 'Machine token created', 'Upstream added', 'Member added']) {
        assert.ok(log.includes(label), `audit log shows "${label}"`);
      }
      await owner.getByLabel('Kind').selectOption('consent_granted');
      await owner.getByRole('button', { name: 'Filter' }).click();
      const kinds = await owner.locator('table.list tbody tr td[data-label="Event"] .fine').allInnerTexts();
      assert.ok(kinds.length >= 1 && kinds.every((k) => k === 'consent_granted'), kinds.join(','));
      await owner.goto(`${gh.url}/w/default/audit`);
      await shot(owner, 'audit');

      await owner.getByRole('link', { name: OWNER }).click();
      await owner.getByRole('heading', { name: 'Your account' }).waitFor();
      await shot(owner, 'account');
    });

    t_('a member without the owner role gets 403 on owner pages and never sees others’ apps', async () => {
      // The owner connects another app that stays connected.
      const ownerApp = await HeadlessOAuthProvider.create({ gh: { ...gh, email: OWNER, password: OWNER_PASSWORD }, clientName: 'Owner only app' });
      const first = recordingClient(gh.mcpUrl, { authProvider: ownerApp });
      await assert.rejects(within(STEP_MS, first.client.connect(first.transport), 'owner app connect'), UnauthorizedError);
      await within(STEP_MS, first.transport.finishAuth(ownerApp.lastCode), 'owner app finishAuth');

      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const member = await context.newPage();
      await signIn(member, gh.url, gh.email, gh.password);
      for (const path of ['clients', 'upstreams', 'upstreams/weather', 'members', 'audit']) {
        const res = await member.goto(`${gh.url}/w/default/${path}`);
        assert.equal(res.status(), 403, path);
        assert.match(await member.locator('h1').innerText(), /You cannot open this page/, path);
        assert.equal(res.headers()['x-frame-options'], 'DENY', path);
      }
      await shot(member, 'forbidden');

      await member.goto(`${gh.url}/w/default/apps`);
      const tabs = await member.locator('nav.tabs a').allInnerTexts();
      assert.deepEqual(tabs, ['Connected apps', 'Sessions', 'Machine tokens'], 'members see only their own tabs');
      for (const path of ['apps', 'sessions', 'tokens']) {
        const res = await member.goto(`${gh.url}/w/default/${path}`);
        assert.equal(res.status(), 200, path);
        const text = (await member.locator('table.list').allInnerTexts()).join('\n');
        assert.ok(!text.includes('Owner only app') && !text.includes(OWNER) && !text.includes('nightly CI'), `${path} shows nothing of the owner's`);
      }
      await owner.goto(`${gh.url}/w/default/apps`);
      await row(owner, 'Owner only app').waitFor(); // it is there, for its owner
      await context.close();
    });
  });
}
