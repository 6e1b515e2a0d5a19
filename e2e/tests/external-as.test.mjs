// A workspace that trusts an external authorization server, and the mcp-resource-guard crate's
// example server, both against a real oidc-provider with resource indicators and JWT access
// tokens. The MCP TypeScript SDK (v1) finds the issuer from the protected resource metadata,
// registers, authorizes (the issuer's login and consent answered by the test) and calls tools;
// tokens of another issuer, for another audience, expired, or signed by a retired key are
// refused with an `invalid_token` challenge; key rotation at the issuer is followed without a
// restart. Needs the example binary: `cargo build -p mcp-resource-guard --example protected_server`.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import {
  ACCOUNT,
  ExternalIssuerOAuthProvider,
  exampleBin,
  startExampleServer,
  startExternalIssuer,
} from '../lib/external-as.mjs';
import { Browser, authorizeInBrowser } from '../lib/browser.mjs';
import { toolText, within } from '../lib/mcp-oauth.mjs';
import { backends, gatehouseBin, run, startGatehouse, withLogs } from '../lib/server.mjs';

const STEP_MS = 20_000;
const CLIENT_INFO = { name: 'e2e external-as client', version: '1.0.0' };

/** The SDK's whole flow from the MCP URL alone; returns a connected client. */
async function connectThroughIssuer(mcpUrl, issuer) {
  const provider = await ExternalIssuerOAuthProvider.create({ issuer, clientName: 'e2e sdk via external AS' });
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  const c1 = new Client(CLIENT_INFO);
  await assert.rejects(within(STEP_MS, c1.connect(first), 'connect without tokens'), UnauthorizedError);
  await c1.close().catch(() => {});
  await within(STEP_MS, first.finishAuth(provider.lastCode), 'finishAuth');
  const client = new Client(CLIENT_INFO);
  await within(STEP_MS, client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider })), 'connect');
  return { client, provider };
}

/** A raw initialize with `token`: status and WWW-Authenticate. */
async function tryToken(mcpUrl, token) {
  const res = await fetch(mcpUrl, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: CLIENT_INFO },
    }),
    signal: AbortSignal.timeout(STEP_MS),
  });
  await res.arrayBuffer();
  return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '' };
}

function assertInvalidToken({ status, challenge }, says, what) {
  assert.equal(status, 401, `${what}: status`);
  assert.match(challenge, /^Bearer error="invalid_token", error_description="[^"]*", resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/[^"]*"$/, `${what}: ${challenge}`);
  assert.ok(challenge.includes(says), `${what}: expected "${says}" in ${challenge}`);
}

test('the example server binary is built', () => {
  assert.ok(existsSync(exampleBin()), `build it first: cargo build -p mcp-resource-guard --example protected_server (looked at ${exampleBin()})`);
});

for (const backend of backends()) {
  describe(`external authorization server (${backend})`, () => {
    let gh;
    let issuer;
    let other;
    let example;
    const open = new Set();

    before(async () => {
      issuer = await startExternalIssuer();
      other = await startExternalIssuer();
      gh = await startGatehouse({
        backend,
        env: { GATEHOUSE_EXTERNAL_ISSUER_ALLOW_HTTP_LOOPBACK: 'true', GATEHOUSE_EXTERNAL_JWKS_MIN_REFETCH: '1s' },
      });
      // The CLI checks the issuer URL under the same settings as the server: loopback http needs the allowance.
      const out = await run(
        gatehouseBin(),
        ['workspace', 'trust', 'default', '--issuer', issuer.issuer, '--data-dir', gh.dataDir,
          ...(gh.databaseUrl ? ['--database-url', gh.databaseUrl] : [])],
        { env: { ...process.env, GATEHOUSE_EXTERNAL_ISSUER_ALLOW_HTTP_LOOPBACK: 'true' } },
      );
      assert.match(out.stdout, /now trusts/);
      example = await startExampleServer(issuer.issuer);
    });

    after(async () => {
      for (const c of open) await c.close().catch(() => {});
      // Every one stopped even if another fails, so that nothing keeps the test process alive.
      const results = await Promise.allSettled([example?.stop(), gh?.stop(), issuer?.stop(), other?.stop()]);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    });

    const t_ = (name, fn) => test(name, withLogs(() => gh, fn));

    t_('the workspace metadata names the external issuer; the built-in one issues nothing for it', async () => {
      const prm = await (await fetch(`${gh.url}/.well-known/oauth-protected-resource/t/default/mcp`)).json();
      assert.deepEqual(prm.authorization_servers, [issuer.issuer]);
      assert.equal(prm.resource, gh.mcpUrl);
      // Someone who tries the built-in AS anyway (a stale client): sign-in works, the token does not.
      const redirectUri = 'http://127.0.0.1:9/callback';
      const reg = await fetch(`${gh.url}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ client_name: 'stale', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' }),
      });
      assert.equal(reg.status, 201);
      const { client_id } = await reg.json();
      const authorize = `${gh.url}/authorize?${new URLSearchParams({
        response_type: 'code', client_id, redirect_uri: redirectUri, state: 's', scope: 'mcp:read mcp:tools',
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', resource: gh.mcpUrl })}`;
      const location = new URL(await authorizeInBrowser(new Browser(gh.url), authorize, { email: gh.email, password: gh.password }));
      assert.equal(location.searchParams.get('error'), 'invalid_target', `${location}`);
      assert.ok(location.searchParams.get('error_description').includes(issuer.issuer), 'names where to get tokens');
      const untrusted = await (await fetch(`${gh.url}/.well-known/oauth-protected-resource/t/other/mcp`)).json();
      assert.deepEqual(untrusted.authorization_servers, [gh.issuer], 'other workspaces keep the built-in AS');
    });

    for (const where of ['gateway', 'example server']) {
      t_(`the MCP SDK gets a token at the external issuer and calls tools through the ${where}`, async () => {
        const mcpUrl = where === 'gateway' ? gh.mcpUrl : example.url;
        const before = issuer.interactions.length;
        const { client, provider } = await connectThroughIssuer(mcpUrl, issuer);
        open.add(client);
        const authz = provider.authorizationUrls[0];
        assert.equal(authz.origin, issuer.issuer, 'sent to the external issuer found through the PRM');
        assert.equal(authz.searchParams.get('resource'), mcpUrl, 'RFC 8707 resource = the MCP URL');
        assert.deepEqual(issuer.interactions.slice(before), ['login', 'consent'], 'the issuer asked the user');
        const token = provider.tokens().access_token;
        assert.equal(jwtPayload(token).aud, mcpUrl, 'a JWT access token for this resource');

        const tools = (await within(STEP_MS, client.listTools(), 'tools/list')).tools.map((t) => t.name);
        assert.ok(tools.includes('echo') && tools.includes('whoami'), `tools: ${tools}`);
        const echo = await within(STEP_MS, client.callTool({ name: 'echo', arguments: { text: 'from afar' } }), 'echo');
        assert.equal(toolText(echo), 'from afar');
        const who = toolText(await within(STEP_MS, client.callTool({ name: 'whoami', arguments: {} }), 'whoami'));
        assert.ok(who.includes(ACCOUNT), `whoami names the issuer's subject: ${who}`);
        await client.close();
        open.delete(client);
      });
    }

    t_('tokens of another issuer, for another audience, or expired are refused; rotation is followed', async () => {
      for (const mcpUrl of [gh.mcpUrl, example.url]) {
        const good = await issuer.clientCredentialsToken(mcpUrl);
        assert.equal((await tryToken(mcpUrl, good)).status, 200, `${mcpUrl}: a real token of the issuer works`);
        assertInvalidToken(await tryToken(mcpUrl, await other.clientCredentialsToken(mcpUrl)), 'does not publish', 'another issuer');
        assertInvalidToken(
          await tryToken(mcpUrl, await issuer.forge({ aud: mcpUrl, iss: other.issuer })),
          'not by the issuer this resource trusts',
          'another issuer named in the token',
        );
        const elsewhere = mcpUrl === gh.mcpUrl ? gh.otherMcpUrl : `${gh.url}/t/default/mcp`;
        assertInvalidToken(await tryToken(mcpUrl, await issuer.clientCredentialsToken(elsewhere)), 'audience does not match', 'another audience');
        const expired = await issuer.forge({ aud: mcpUrl, exp: Math.floor(Date.now() / 1000) - 120 });
        assertInvalidToken(await tryToken(mcpUrl, expired), 'expired', 'expired');
      }

      // Rotation: new key at the issuer, old one removed; neither server restarts.
      const beforeGateway = await issuer.clientCredentialsToken(gh.mcpUrl);
      const beforeExample = await issuer.clientCredentialsToken(example.url);
      const oldKid = issuer.kid();
      await issuer.rotate();
      assert.notEqual(issuer.kid(), oldKid);
      await new Promise((r) => setTimeout(r, 1100)); // past the 1 s refetch limit set for this test
      for (const [mcpUrl, retired] of [[gh.mcpUrl, beforeGateway], [example.url, beforeExample]]) {
        const fresh = await issuer.clientCredentialsToken(mcpUrl);
        assert.equal(jwtHeader(fresh).kid, issuer.kid(), 'signed with the new key');
        assert.equal((await tryToken(mcpUrl, fresh)).status, 200, `${mcpUrl}: the new key is fetched on first sight`);
        assertInvalidToken(await tryToken(mcpUrl, retired), 'does not publish', 'signed by the retired key');
      }
    });

    t_('no token: the challenge sends the client to the metadata; a token in the URL is refused', async () => {
      for (const mcpUrl of [gh.mcpUrl, example.url]) {
        const res = await fetch(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
        assert.equal(res.status, 401);
        const metadata = new URL(mcpUrl);
        metadata.pathname = `/.well-known/oauth-protected-resource${metadata.pathname}`;
        assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadata}", scope="mcp:read mcp:tools"`);
        const prm = await (await fetch(metadata)).json();
        assert.deepEqual(prm.authorization_servers, [issuer.issuer]);
        const token = await issuer.clientCredentialsToken(mcpUrl);
        const inUrl = await fetch(`${mcpUrl}?access_token=${token}`, { method: 'POST', body: '{}' });
        assert.equal(inUrl.status, 400);
        // Read-only token, tool call: 403 naming what is needed plus what was granted.
        const readOnly = await issuer.clientCredentialsToken(mcpUrl, 'mcp:read');
        const call = await fetch(mcpUrl, {
          method: 'POST',
          headers: { authorization: `Bearer ${readOnly}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' } } }),
        });
        assert.equal(call.status, 403);
        assert.match(call.headers.get('www-authenticate'), /^Bearer error="insufficient_scope", scope="mcp:read mcp:tools"/);
      }
    });
  });
}

function jwtPayload(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}

function jwtHeader(token) {
  return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
}
