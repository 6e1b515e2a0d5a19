// The credential vault end to end, with real parts: `oidc-provider` on loopback is an upstream
// service's authorization server (its own login and consent pages, PKCE, resource indicators,
// access tokens that live a few seconds, rotated refresh tokens, revocation), and an upstream
// MCP server (@modelcontextprotocol/sdk) demands its tokens, checking them with `jose` against
// the provider's JWKS. A person in headless chromium connects their upstream account from
// Gatehouse's Connect page; an MCP SDK client authorized through Gatehouse's consent calls the
// upstream's tool, which answers with the subject of the upstream token it got. The token
// expires and is refreshed without the person noticing; the upstream revokes the grant and the
// person is asked to reconnect, in the tool's answer and on the Connect page.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ChromiumOAuthProvider, callbackServer, launchChromium, screenshot, signIn } from '../lib/chromium.mjs';
import { toolText, within } from '../lib/mcp-oauth.mjs';
import { backends, startGatehouse, withLogs } from '../lib/server.mjs';
import { UPSTREAM_SCOPE, VAULT_CLIENT_ID, approveAtUpstream, prepareUpstreamAs } from '../lib/upstream-as.mjs';
import { startProtectedUpstream } from '../upstream/protected-server.mjs';

const STEP_MS = 60_000;
/** The upstream access tokens' lifetime: short, so that one expires during the test. */
const ACCESS_TOKEN_TTL = 4;
const UPSTREAM = 'files';
const TOOL = `${UPSTREAM}__whoami`;
/** The person's account at the upstream service (not their Gatehouse account). */
const UPSTREAM_LOGIN = 'alice-at-files';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

for (const [index, backend] of backends().entries()) {
  describe(`credential vault: a person's upstream account, end to end [${backend}]`, () => {
    let gh;
    let as;
    let upstream;
    let browser;
    let page;
    let callback;
    let mcp;
    const shot = (p, name) => (index === 0 ? screenshot(p, name) : Promise.resolve());
    const t_ = (name, fn) => test(name, { timeout: 4 * STEP_MS }, withLogs(() => gh, fn));
    const connectUrl = () => `${gh.url}/w/default/upstreams/${UPSTREAM}/connect`;
    const callWhoami = () => within(STEP_MS, mcp.callTool({ name: TOOL, arguments: {} }), TOOL);
    const status = async () => {
      await page.goto(connectUrl());
      return (await page.locator('dl.facts dd').first().innerText()).trim();
    };

    before(async () => {
      gh = await startGatehouse({ backend });
      as = await prepareUpstreamAs({ accessTokenTtl: ACCESS_TOKEN_TTL });
      upstream = await startProtectedUpstream({ issuer: as.issuer, jwksUri: as.jwksUri, scope: UPSTREAM_SCOPE });
      await as.listen({ gatehouseUrl: gh.url, resource: upstream.url });
      await gh.cli(['upstream', 'add', 'default', UPSTREAM, '--url', upstream.url]);
      await gh.cli([
        'upstream', 'sign-in', 'default', UPSTREAM, '--grant', 'authorization_code',
        '--issuer', as.issuer,
        '--authorization-endpoint', `${as.issuer}/auth`,
        '--token-endpoint', `${as.issuer}/token`,
        '--client-id', VAULT_CLIENT_ID,
        '--scope', UPSTREAM_SCOPE,
      ]);
      browser = await launchChromium();
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      // oidc-provider's development pages import a web font; there is no network here.
      await context.route(/fonts\.googleapis\.com/, (route) => route.abort());
      page = await context.newPage();
      callback = await callbackServer();
    });
    after(async () => {
      await mcp?.close().catch(() => {});
      await browser?.close();
      await callback?.close();
      await gh?.stop();
      await upstream?.stop();
      await as?.stop();
    });

    t_('without a connected account, the tool call answers with the Connect link', async () => {
      await signIn(page, gh.url, gh.email, gh.password);
      // An MCP SDK client, authorized by the person on Gatehouse's consent page.
      const provider = new ChromiumOAuthProvider({ gh, page, callback, clientName: 'vault e2e client' });
      const first = new StreamableHTTPClientTransport(new URL(gh.mcpUrl), { authProvider: provider });
      const probe = new Client({ name: 'gatehouse-e2e-vault', version: '0.0.0' });
      await assert.rejects(within(STEP_MS, probe.connect(first), 'connect'), UnauthorizedError);
      await probe.close().catch(() => {});
      await within(STEP_MS, first.finishAuth(provider.lastCode), 'finishAuth');
      mcp = new Client({ name: 'gatehouse-e2e-vault', version: '0.0.0' });
      await within(STEP_MS, mcp.connect(new StreamableHTTPClientTransport(new URL(gh.mcpUrl), { authProvider: provider })), 'connect');

      const answer = await callWhoami();
      assert.equal(answer.isError, true, JSON.stringify(answer));
      assert.ok(toolText(answer).includes(connectUrl()), `the error carries the Connect link: ${toolText(answer)}`);
      assert.equal(upstream.seen.length, 0, 'the upstream was not called without a token');
      assert.equal(await status(), 'Not connected');
    });

    t_('the person connects their upstream account in the browser and the tool sees their upstream token', async () => {
      await page.goto(connectUrl());
      await Promise.all([
        page.waitForURL((u) => u.href.startsWith(`${as.issuer}/`)),
        page.getByRole('button', { name: 'Connect' }).click(),
      ]);
      await shot(page, 'upstream-provider-login');
      await approveAtUpstream(page, { gatehouseUrl: gh.url, issuer: as.issuer, login: UPSTREAM_LOGIN });
      await page.getByText('Your account is connected').waitFor();
      assert.equal(await status(), 'Connected');
      await shot(page, 'upstream-connected');
      assert.deepEqual(
        as.tokenRequests.map((r) => `${r.grant_type}:${r.ok}`),
        ['authorization_code:true'],
        'Gatehouse redeemed one code at the upstream',
      );

      const answer = await callWhoami();
      assert.notEqual(answer.isError, true, toolText(answer));
      const who = JSON.parse(toolText(answer));
      assert.equal(who.sub, UPSTREAM_LOGIN, 'the upstream got the person\'s upstream token');
      assert.equal(upstream.seen.length, 1);
    });

    t_('the upstream token expires and is refreshed without the person noticing', async () => {
      const firstToken = upstream.seen.at(-1);
      // Wait (bounded) until the first token has expired at the upstream.
      const waitMs = (firstToken.exp + 1) * 1000 - Date.now();
      assert.ok(waitMs < (ACCESS_TOKEN_TTL + 2) * 1000, `a short wait: ${waitMs} ms`);
      await sleep(Math.max(0, waitMs));
      const answer = await callWhoami();
      assert.notEqual(answer.isError, true, toolText(answer));
      const who = JSON.parse(toolText(answer));
      assert.equal(who.sub, UPSTREAM_LOGIN);
      assert.notEqual(who.jti, firstToken.jti, 'a new upstream access token');
      assert.ok(upstream.seen.at(-1).exp > firstToken.exp);
      const refreshes = as.tokenRequests.filter((r) => r.grant_type === 'refresh_token');
      assert.ok(refreshes.length >= 1 && refreshes.every((r) => r.ok), JSON.stringify(as.tokenRequests));
      assert.ok(as.refreshTokens.length >= 2, 'the refresh token was rotated');
      assert.deepEqual(upstream.refused, [], 'refreshed before it expired: the upstream never saw a stale token');
      assert.equal(await status(), 'Connected');
    });

    t_('the upstream revokes the grant and the person is asked to reconnect', async () => {
      await as.revokeLatestRefreshToken();
      const last = upstream.seen.at(-1);
      const seen = upstream.seen.length;
      const waitMs = (last.exp + 1) * 1000 - Date.now();
      assert.ok(waitMs < (ACCESS_TOKEN_TTL + 2) * 1000, `a short wait: ${waitMs} ms`);
      await sleep(Math.max(0, waitMs));

      const answer = await callWhoami();
      assert.equal(answer.isError, true, JSON.stringify(answer));
      assert.ok(toolText(answer).includes(connectUrl()), `the error carries the Connect link: ${toolText(answer)}`);
      assert.equal(upstream.seen.length, seen, 'no call reached the upstream tool');
      const failed = as.tokenRequests.filter((r) => r.grant_type === 'refresh_token' && !r.ok);
      assert.deepEqual(failed.map((r) => r.error), ['invalid_grant'], 'one refresh, refused; no retry storm');

      assert.match(await status(), /^Needs reconnecting/);
      const facts = await page.locator('dl.facts').innerText();
      assert.ok(!facts.includes('renewed automatically'), `no promise of renewal for a dead grant: ${facts}`);
      await shot(page, 'upstream-needs-reconnect');
      assert.match(gh.logs(), /upstream_needs_reconnect/);
      // A second call does not try the dead grant again.
      const again = await callWhoami();
      assert.equal(again.isError, true);
      assert.equal(as.tokenRequests.filter((r) => r.grant_type === 'refresh_token' && !r.ok).length, 1);
    });

    t_('the person reconnects and the same MCP session works again', async () => {
      await page.goto(connectUrl());
      await Promise.all([
        page.waitForURL((u) => u.href.startsWith(`${as.issuer}/`)),
        page.getByRole('button', { name: 'Reconnect' }).click(),
      ]);
      await approveAtUpstream(page, { gatehouseUrl: gh.url, issuer: as.issuer, login: UPSTREAM_LOGIN });
      await page.getByText('Your account is connected').waitFor();
      assert.equal(await status(), 'Connected');
      const codes = as.tokenRequests.filter((r) => r.grant_type === 'authorization_code' && r.ok);
      assert.equal(codes.length, 2, 'a second code, from the reconnection');
      const answer = await callWhoami();
      assert.notEqual(answer.isError, true, toolText(answer));
      assert.equal(JSON.parse(toolText(answer)).sub, UPSTREAM_LOGIN);
    });
  });
}
