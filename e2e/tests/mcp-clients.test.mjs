// Real MCP clients against a real gatehouse, each given only the MCP URL: they find the
// authorization server through the 401 challenge and Protected Resource Metadata, register with
// DCR, run authorization code + PKCE through our login and consent pages (driven headlessly),
// and then speak MCP to the built-in demo server.
//   - @modelcontextprotocol/sdk 1.x: connect, refresh after a 401, step-up after a 403
//   - @modelcontextprotocol/client 2.x: connect (strict issuer and RFC 9207 iss checks), step-up
//   - mcp-remote: the stdio <-> Streamable HTTP bridge CLI, with its own callback server

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as jose from 'jose';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError as UnauthorizedErrorV1 } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPError as StreamableHTTPErrorV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
  UnauthorizedError as UnauthorizedErrorV2,
  IssuerMismatchError as IssuerMismatchErrorV2,
} from '@modelcontextprotocol/client';
import { Browser, authorizeInBrowser } from '../lib/browser.mjs';
import { HeadlessOAuthProvider, toolText, within } from '../lib/mcp-oauth.mjs';
import { backends, diagnostics, freePort, startGatehouse, withLogs } from '../lib/server.mjs';

const STEP_MS = 60_000; // every client interaction is bounded by this
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CLIENT_INFO = { name: 'gatehouse-e2e', version: '0.0.0' };

const scopeSet = (s) => new Set((s ?? '').split(' ').filter(Boolean));

// The v2 SDK asks for the challenged scope plus offline_access (the AS lists offline_access in
// scopes_supported and the client registered the refresh_token grant).
function assertScopeRequest(url, what) {
  const asked = scopeSet(url.searchParams.get('scope'));
  asked.delete('offline_access');
  assert.deepEqual(asked, scopeSet('mcp:read mcp:tools'), `${what}: scope ${url.searchParams.get('scope')}`);
}

/** Expects `promise` to reject with an instance of `ErrorClass`; returns the error. */
async function rejectsWith(promise, ErrorClass, what) {
  const err = await within(STEP_MS, promise, what).then(
    () => null,
    (e) => e,
  );
  assert.ok(err, `${what}: expected ${ErrorClass.name}, but it succeeded`);
  assert.ok(err instanceof ErrorClass, `${what}: expected ${ErrorClass.name}, got ${err?.stack ?? err}`);
  return err;
}

for (const backend of backends()) {
  describe(`MCP clients against gatehouse [${backend}]`, () => {
    let gh;
    const t_ = (name, fn) => test(name, { timeout: 3 * STEP_MS }, withLogs(() => gh, fn));
    // Clients still open when a test fails half-way; closed in after().
    const open = new Set();

    before(async () => {
      gh = await startGatehouse({ backend });
    });
    after(async () => {
      for (const c of open) await c.close().catch(() => {});
      await gh?.stop();
    });

    // whoami must name alice (the subject of the access token the client holds), the client the
    // SDK registered, this workspace, and the scope that token carries.
    async function assertWhoami(client, provider) {
      const result = await within(STEP_MS, client.callTool({ name: 'whoami', arguments: {} }), 'tools/call whoami');
      assert.notEqual(result.isError, true, `whoami failed: ${JSON.stringify(result)}`);
      const me = JSON.parse(toolText(result));
      const claims = jose.decodeJwt(provider.tokens().access_token);
      assert.match(me.subject, UUID, 'subject is a user id');
      assert.equal(me.subject, claims.sub, 'subject is the user the token was issued to');
      assert.equal(me.client_id, provider.clientInformation().client_id, 'client_id is the one the SDK registered');
      assert.equal(me.workspace, 'default');
      assert.deepEqual(scopeSet(me.scope), scopeSet(claims.scope), 'scope is the token\'s scope');
      return me;
    }

    async function assertTools(client) {
      const { tools } = await within(STEP_MS, client.listTools(), 'tools/list');
      assert.deepEqual(tools.map((t) => t.name).sort(), ['add', 'echo', 'whoami']);
    }

    async function assertAdd(client) {
      const sum = await within(STEP_MS, client.callTool({ name: 'add', arguments: { a: 2, b: 3 } }), 'tools/call add');
      assert.notEqual(sum.isError, true, `add failed: ${JSON.stringify(sum)}`);
      assert.equal(toolText(sum), '5');
    }

    // v1: the first connect runs discovery + DCR + the authorization request and throws
    // UnauthorizedError once the "user" has been sent to the AS; finishAuth redeems the code;
    // a second connect (new transport, same provider) then works with the tokens.
    async function connectV1(provider) {
      const first = new TransportV1(new URL(gh.mcpUrl), { authProvider: provider });
      const c1 = new ClientV1(CLIENT_INFO);
      await rejectsWith(c1.connect(first), UnauthorizedErrorV1, 'v1 connect without tokens');
      await c1.close().catch(() => {});
      assert.equal(provider.authorizationUrls.length, 1, 'the SDK sent the user to the authorization server once');
      await within(STEP_MS, first.finishAuth(provider.lastCode), 'v1 finishAuth');

      const transport = new TransportV1(new URL(gh.mcpUrl), { authProvider: provider });
      const client = new ClientV1(CLIENT_INFO);
      open.add(client);
      await within(STEP_MS, client.connect(transport), 'v1 connect with tokens');
      return { client, transport };
    }

    t_('sdk v1: discovers, registers, authorizes through login + consent, lists and calls tools', async (t) => {
      const provider = await HeadlessOAuthProvider.create({ gh, clientName: 'e2e sdk v1' });
      const { client } = await connectV1(provider);

      // What the SDK did on its own from the MCP URL alone.
      const authz = provider.authorizationUrls[0];
      assert.equal(authz.origin + authz.pathname, `${gh.url}/authorize`, 'authorization endpoint from AS metadata');
      assert.equal(authz.searchParams.get('resource'), gh.mcpUrl, 'resource = PRM resource');
      assert.equal(authz.searchParams.get('code_challenge_method'), 'S256');
      assert.deepEqual(scopeSet(authz.searchParams.get('scope')), scopeSet('mcp:read mcp:tools'), 'scope from the challenge');
      assert.equal(provider.lastCallback.get('iss'), gh.issuer, 'RFC 9207 iss in the callback');
      assert.ok(provider.clientInformation()?.client_id, 'registered by DCR');
      assert.ok(provider.tokens()?.refresh_token, 'a refresh token was issued');

      assert.equal(client.getServerVersion()?.name !== undefined, true, 'initialize result has serverInfo');
      await assertTools(client);
      await assertAdd(client);
      const me = await assertWhoami(client, provider);
      diagnostics(t, `whoami: ${JSON.stringify(me)}`);
      await client.close();
      open.delete(client);
    });

    t_('sdk v1: a rejected access token (401 invalid_token) is refreshed, rotating the refresh token', async () => {
      const provider = await HeadlessOAuthProvider.create({ gh, clientName: 'e2e sdk v1 refresh' });
      const { client } = await connectV1(provider);
      await assertAdd(client);
      const old = provider.tokens();
      const saves = provider.savedTokens.length;

      // Same token with one signature byte flipped: well-formed, signed by no key we hold.
      const [h, p, s] = old.access_token.split('.');
      const sig = Buffer.from(s, 'base64url');
      sig[0] ^= 0x01;
      provider.corruptAccessToken(`${h}.${p}.${sig.toString('base64url')}`);

      // The server's answer to that token, as the SDK sees it.
      const probe = await fetch(gh.mcpUrl, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${provider.tokens().access_token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      await probe.arrayBuffer();
      assert.equal(probe.status, 401);
      assert.match(probe.headers.get('www-authenticate') ?? '', /^Bearer .*error="invalid_token"/);

      await assertAdd(client);
      assert.equal(provider.savedTokens.length, saves + 1, 'the SDK saved exactly one new token set (a refresh)');
      const renewed = provider.tokens();
      assert.equal(provider.authorizationUrls.length, 1, 'no new authorization: it was a refresh');
      assert.ok(renewed.refresh_token, 'refresh response carries a refresh token');
      assert.notEqual(renewed.refresh_token, old.refresh_token, 'refresh token rotated');
      assert.notEqual(renewed.access_token, old.access_token, 'new access token');
      await assertWhoami(client, provider);
      await client.close();
      open.delete(client);
    });

    // Step-up: the user grants only mcp:read at first (the test narrows the scope of the SDK's
    // first authorization request, standing in for a user or policy granting less); listing
    // works, calling a tool gets 403 insufficient_scope with scope="mcp:read mcp:tools".
    function narrowFirstAuthorization(url, n) {
      if (n === 0) url.searchParams.set('scope', 'mcp:read');
    }

    // SDK 1.x (1.32.2) on 403 insufficient_scope: the transport calls auth() with the challenged
    // scope, but auth() prefers a refresh whenever it holds a refresh token, and a refresh cannot
    // widen a grant (RFC 6749 s6), so the retried call gets the same 403 and the SDK gives up
    // ("403 after trying upscoping"). Only without a refresh token does it start a new
    // authorization for the challenged scope; the redirect cannot finish inside send(), so the
    // call throws UnauthorizedError and the app redeems the code and retries. This test pins
    // both halves, so an SDK or server change in either shows up here.
    const v1StepUp = 'sdk v1: 403 insufficient_scope -> refresh keeps mcp:read (SDK gives up); without a refresh token it re-authorizes';
    t_(v1StepUp, async (t) => {
      const provider = await HeadlessOAuthProvider.create({
        gh,
        clientName: 'e2e sdk v1 step-up',
        editAuthorizationUrl: narrowFirstAuthorization,
      });
      const { client, transport } = await connectV1(provider);
      assert.equal(jose.decodeJwt(provider.tokens().access_token).scope, 'mcp:read', 'first token has mcp:read only');
      await assertTools(client);

      // The 403 the SDK sees.
      const probe = await fetch(gh.mcpUrl, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${provider.tokens().access_token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': transport.sessionId,
          'mcp-protocol-version': transport.protocolVersion ?? '2025-11-25',
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 99,
          method: 'tools/call',
          params: { name: 'add', arguments: { a: 1, b: 1 } },
        }),
      });
      await probe.arrayBuffer();
      assert.equal(probe.status, 403);
      const challenge = probe.headers.get('www-authenticate') ?? '';
      assert.match(challenge, /^Bearer /);
      assert.match(challenge, /error="insufficient_scope"/);
      const challenged = challenge.match(/scope="([^"]*)"/)?.[1];
      assert.deepEqual(scopeSet(challenged), scopeSet('mcp:read mcp:tools'), 'needed + granted scopes');
      const prm = `${gh.url}/.well-known/oauth-protected-resource/t/default/mcp`;
      assert.ok(challenge.includes(`resource_metadata="${prm}"`), challenge);

      // Half 1: with a refresh token, the SDK refreshes and gives up.
      const saves = provider.savedTokens.length;
      const refreshToken = provider.tokens().refresh_token;
      const add = () => client.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
      const err = await rejectsWith(add(), StreamableHTTPErrorV1, 'v1 tools/call with mcp:read');
      diagnostics(t, `v1 with a refresh token: ${err.message}`);
      assert.equal(err.code, 403);
      assert.match(err.message, /after trying upscoping/);
      assert.equal(provider.authorizationUrls.length, 1, 'no new authorization was started');
      assert.equal(provider.savedTokens.length, saves + 1, 'the SDK refreshed once');
      assert.notEqual(provider.tokens().refresh_token, refreshToken, 'refresh token rotated');
      assert.equal(jose.decodeJwt(provider.tokens().access_token).scope, 'mcp:read', 'a refresh does not widen the grant');

      // Half 2: without a refresh token, the SDK asks for the challenged scope.
      provider.dropRefreshToken();
      await assertTools(client); // a success resets the SDK's "already tried upscoping" guard
      await rejectsWith(add(), UnauthorizedErrorV1, 'v1 tools/call, no refresh token');
      assert.equal(provider.authorizationUrls.length, 2, 'the SDK started a second authorization for the step-up');
      const stepUp = provider.authorizationUrls[1].searchParams.get('scope');
      assert.deepEqual(scopeSet(stepUp), scopeSet('mcp:read mcp:tools'), 'step-up asks for the challenged scope');
      await within(STEP_MS, transport.finishAuth(provider.lastCode), 'v1 finishAuth (step-up)');
      assert.deepEqual(scopeSet(jose.decodeJwt(provider.tokens().access_token).scope), scopeSet('mcp:read mcp:tools'));
      await assertAdd(client);
      await assertWhoami(client, provider);
      await client.close();
      open.delete(client);
    });

    // v2: finishAuth takes the whole callback query so that it can check RFC 9207 iss against
    // the issuer it validated in the AS metadata.
    async function connectV2(provider, { checkIss = false } = {}) {
      const first = new TransportV2(new URL(gh.mcpUrl), { authProvider: provider });
      const c1 = new ClientV2(CLIENT_INFO);
      await rejectsWith(c1.connect(first), UnauthorizedErrorV2, 'v2 connect without tokens');
      await c1.close().catch(() => {});
      assert.equal(provider.authorizationUrls.length, 1, 'the SDK sent the user to the authorization server once');
      if (checkIss) {
        // The iss check is live: a callback claiming another issuer is refused before the code
        // is redeemed (so the genuine callback below still works).
        const forged = new URLSearchParams(provider.lastCallback);
        forged.set('iss', 'http://127.0.0.1:1');
        await rejectsWith(first.finishAuth(forged), IssuerMismatchErrorV2, 'v2 finishAuth with a forged iss');
      }
      await within(STEP_MS, first.finishAuth(provider.lastCallback), 'v2 finishAuth');

      const transport = new TransportV2(new URL(gh.mcpUrl), { authProvider: provider });
      const client = new ClientV2(CLIENT_INFO);
      open.add(client);
      await within(STEP_MS, client.connect(transport), 'v2 connect with tokens');
      return { client, transport };
    }

    t_('sdk v2 (@modelcontextprotocol/client): strict issuer + iss checks pass; lists and calls tools', async (t) => {
      const provider = await HeadlessOAuthProvider.create({ gh, clientName: 'e2e sdk v2' });
      const { client } = await connectV2(provider, { checkIss: true });
      assert.equal(provider.lastCallback.get('iss'), gh.issuer, 'RFC 9207 iss in the callback');
      assert.equal(provider.authorizationUrls[0].searchParams.get('resource'), gh.mcpUrl);
      assertScopeRequest(provider.authorizationUrls[0], 'first request');
      await assertTools(client);
      await assertAdd(client);
      const me = await assertWhoami(client, provider);
      diagnostics(t, `whoami: ${JSON.stringify(me)}`);
      await client.close();
      open.delete(client);
    });

    t_('sdk v2: 403 insufficient_scope -> re-authorizes with the union scope, then the call succeeds', async (t) => {
      const provider = await HeadlessOAuthProvider.create({
        gh,
        clientName: 'e2e sdk v2 step-up',
        editAuthorizationUrl: narrowFirstAuthorization,
      });
      const { client, transport } = await connectV2(provider);
      assert.equal(jose.decodeJwt(provider.tokens().access_token).scope, 'mcp:read', 'first token has mcp:read only');
      await assertTools(client);

      const add = client.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
      const outcome = await within(STEP_MS, add, 'v2 tools/call with mcp:read').then(
        (r) => ({ result: r }),
        (e) => ({ error: e }),
      );
      diagnostics(t, `v2 after 403: ${outcome.error ? `threw ${outcome.error}` : 'succeeded'}; ` +
        `authorization requests: ${provider.authorizationUrls.length}; token saves: ${provider.savedTokens.length}`);
      assert.equal(provider.authorizationUrls.length, 2, 'the SDK started a second authorization for the step-up');
      assertScopeRequest(provider.authorizationUrls[1], 'step-up request');
      assert.ok(outcome.error instanceof UnauthorizedErrorV2, `expected UnauthorizedError, got ${outcome.error ?? 'success'}`);
      await within(STEP_MS, transport.finishAuth(provider.lastCallback), 'v2 finishAuth (step-up)');
      assert.deepEqual(scopeSet(jose.decodeJwt(provider.tokens().access_token).scope), scopeSet('mcp:read mcp:tools'));
      await assertAdd(client);
      await assertWhoami(client, provider);
      await client.close();
      open.delete(client);
    });

    t_('mcp-remote: bridges stdio to the gateway after a browser sign-in', async (t) => {
      const result = await runMcpRemote(gh, t);
      assert.equal(toolText(result), 'hello through mcp-remote');
    });
  });
}

// mcp-remote: spawned with Node 24, a throwaway HOME and config dir, and a BROWSER that does
// nothing; we read the authorization URL it prints, sign in with the cookie-jar browser and
// deliver the final redirect to its loopback callback server ourselves.
async function runMcpRemote(gh, t) {
  const require = createRequire(import.meta.url);
  const bin = path.join(path.dirname(require.resolve('mcp-remote/package.json')), 'dist/proxy.js');
  const home = await mkdtemp(path.join(os.tmpdir(), 'gh-e2e-mcp-remote-'));
  const noBrowser = path.join(home, 'no-browser.sh');
  await writeFile(noBrowser, '#!/bin/sh\nexit 0\n');
  await chmod(noBrowser, 0o755);
  const port = await freePort();
  const env = { ...process.env, HOME: home, MCP_REMOTE_CONFIG_DIR: path.join(home, '.mcp-auth'), BROWSER: noBrowser };
  delete env.DISPLAY;
  delete env.WAYLAND_DISPLAY;
  for (const k of Object.keys(env)) if (k.startsWith('GATEHOUSE_')) delete env[k];
  const child = spawn(process.execPath, [bin, gh.mcpUrl, String(port), '--host', '127.0.0.1'], {
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdoutBuf = '';
  const waiters = new Map(); // JSON-RPC id -> resolve
  const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig)));
  child.stdout.on('data', (d) => {
    stdoutBuf += d;
    let nl;
    while ((nl = stdoutBuf.indexOf('\n')) >= 0) {
      const line = stdoutBuf.slice(0, nl).trim();
      stdoutBuf = stdoutBuf.slice(nl + 1);
      if (!line) continue;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      if (msg.id !== undefined && waiters.has(msg.id)) waiters.get(msg.id)(msg);
    }
  });
  const stderrWatchers = [];
  child.stderr.on('data', (d) => {
    stderr += d;
    for (const w of stderrWatchers) w();
  });
  const waitStderr = (re, what) =>
    within(
      STEP_MS,
      new Promise((resolve, reject) => {
        const check = () => {
          const m = stderr.match(re);
          if (m) resolve(m);
        };
        stderrWatchers.push(check);
        check();
        exited.then((code) => reject(new Error(`mcp-remote exited (${code}) while waiting for ${what}`)));
      }),
      `mcp-remote: ${what}`,
    );
  let nextId = 1;
  const rpc = (method, params) => {
    const id = nextId++;
    const reply = new Promise((resolve) => waiters.set(id, resolve));
    child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`);
    return within(STEP_MS, reply, `mcp-remote ${method}`);
  };

  try {
    const [, authorizeUrl] = await waitStderr(/Please authorize this client by visiting:\s*\n(\S+)/, 'the authorization URL');
    const authz = new URL(authorizeUrl);
    assert.equal(authz.origin + authz.pathname, `${gh.url}/authorize`);
    assert.equal(authz.searchParams.get('redirect_uri'), `http://127.0.0.1:${port}/oauth/callback`);
    assert.equal(authz.searchParams.get('resource'), gh.mcpUrl, 'resource = PRM resource');
    assert.equal(authz.searchParams.get('code_challenge_method'), 'S256');
    assertScopeRequest(authz, 'mcp-remote');
    const location = await authorizeInBrowser(new Browser(gh.url), authorizeUrl, { email: gh.email, password: gh.password });
    const callback = new URL(location);
    assert.equal(`${callback.origin}${callback.pathname}`, `http://127.0.0.1:${port}/oauth/callback`);
    assert.ok(callback.searchParams.get('code'), `code in ${location}`);
    // The "browser" lands on mcp-remote's callback server, which redeems the code.
    const landed = await fetch(location, { signal: AbortSignal.timeout(STEP_MS) });
    const landedBody = await landed.text();
    assert.ok(landed.status < 400, `mcp-remote callback page: HTTP ${landed.status} ${landedBody.slice(0, 300)}`);
    await waitStderr(/Proxy established successfully/, 'the proxy to come up');

    const init = await rpc('initialize', {
      protocolVersion: '2025-06-18',
      capabilities: {},
      clientInfo: { name: 'gatehouse-e2e-stdio', version: '0.0.0' },
    });
    assert.ok(init.result, `initialize: ${JSON.stringify(init)}`);
    assert.ok(init.result.serverInfo?.name, 'serverInfo from the remote server');
    child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
    const list = await rpc('tools/list', {});
    assert.deepEqual(list.result?.tools?.map((x) => x.name).sort(), ['add', 'echo', 'whoami'], JSON.stringify(list));
    const call = await rpc('tools/call', { name: 'echo', arguments: { text: 'hello through mcp-remote' } });
    assert.ok(call.result, `tools/call echo: ${JSON.stringify(call)}`);
    assert.notEqual(call.result.isError, true, JSON.stringify(call.result));
    if (process.env.E2E_MCP_REMOTE_STDERR) diagnostics(t, stderr);
    return call.result;
  } catch (e) {
    diagnostics(t, `--- mcp-remote stderr ---\n${stderr.slice(-6000)}`);
    throw e;
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin.end();
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(home, { recursive: true, force: true });
  }
}
