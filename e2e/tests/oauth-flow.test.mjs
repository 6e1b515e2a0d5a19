// A strict third-party OAuth client (oauth4webapi) and JWT library (jose) against a real gatehouse:
// discovery, Dynamic Client Registration, authorization code + PKCE + resource indicators, RFC 9207
// iss, RFC 9068 access tokens, refresh rotation with reuse detection, introspection and revocation.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';
import { backends, startGatehouse, withLogs } from '../lib/server.mjs';
import { Browser, authorizeInBrowser } from '../lib/browser.mjs';
import { INSECURE, authorizationRequest, discover, loopbackRedirectUri, oauthError, register } from '../lib/oauth.mjs';

const SCOPE = 'mcp:read mcp:tools';
const ACCESS_TOKEN_TTL = 900; // DESIGN.md: 15 minutes by default
// A used refresh token presented again inside the server's grace window (a few seconds, for
// retried requests; src/oauth/mod.rs REFRESH_REUSE_GRACE_SECS) is refused without revoking the
// family; reuse detection only fires after it. Timestamps are whole seconds, hence the +2 s margin.
const REFRESH_GRACE_SECONDS = Number(process.env.GATEHOUSE_E2E_REFRESH_GRACE_SECONDS ?? 2);

for (const backend of backends()) {
  describe(`oauth4webapi against gatehouse [${backend}]`, () => {
    let gh;
    let as;
    let jwks;
    const t_ = (name, fn) => test(name, withLogs(() => gh, fn));

    before(async () => {
      gh = await startGatehouse({ backend });
      as = await discover(gh.issuer);
      jwks = jose.createRemoteJWKSet(new URL(as.jwks_uri));
    });
    after(async () => {
      await gh?.stop();
    });

    // Registers a client and runs one authorization through login + consent; returns the code
    // exchange's inputs. `auth` is 'none' (public) or 'client_secret_basic' (confidential).
    // `registered` defaults to the redirect URI used in the request.
    async function authorize({ auth = 'none', resource = gh.mcpUrl, scope = SCOPE, pkce = true, decision, registered } = {}) {
      const redirectUri = await loopbackRedirectUri();
      const reg = await register(as, {
        redirect_uris: [registered ?? redirectUri],
        token_endpoint_auth_method: auth,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        client_name: `e2e ${auth} client`,
      });
      assert.equal(reg.status, 201, `DCR: ${JSON.stringify(reg.body)}`);
      const client = reg.body;
      const clientAuth = auth === 'none' ? oauth.None() : oauth.ClientSecretBasic(client.client_secret);
      const req = await authorizationRequest(as, client, { redirectUri, resource, scope, pkce });
      const browser = new Browser(gh.url);
      const location = await authorizeInBrowser(browser, req.url, { email: gh.email, password: gh.password, decision });
      const callback = new URL(location);
      assert.equal(`${callback.origin}${callback.pathname}`, redirectUri, 'came back to the redirect URI of the request');
      return { client, clientAuth, redirectUri, req, callback };
    }

    async function exchange({ client, clientAuth, redirectUri, req, callback }, resource = gh.mcpUrl) {
      const params = oauth.validateAuthResponse(as, client, callback, req.state);
      const res = await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, redirectUri, req.codeVerifier, {
        additionalParameters: { resource },
        ...INSECURE,
      });
      assert.match(res.headers.get('cache-control') ?? '', /no-store/, 'token response Cache-Control: no-store');
      return oauth.processAuthorizationCodeResponse(as, client, res);
    }

    async function refresh(client, clientAuth, refreshToken) {
      const res = await oauth.refreshTokenGrantRequest(as, client, clientAuth, refreshToken, {
        additionalParameters: { resource: gh.mcpUrl },
        ...INSECURE,
      });
      return oauth.processRefreshTokenResponse(as, client, res);
    }

    // RFC 9068 checks on an access token issued to `client`.
    async function verifyAccessToken(accessToken, client) {
      const { payload, protectedHeader } = await jose.jwtVerify(accessToken, jwks, {
        issuer: gh.issuer,
        audience: gh.mcpUrl,
      });
      assert.equal(protectedHeader.typ, 'at+jwt');
      assert.ok(protectedHeader.kid, 'kid in header');
      assert.equal(payload.client_id, client.client_id);
      assert.deepEqual(new Set(payload.scope.split(' ')), new Set(SCOPE.split(' ')));
      assert.equal(typeof payload.sub, 'string');
      assert.ok(payload.sub.length > 0);
      assert.equal(typeof payload.jti, 'string');
      assert.equal(payload.exp - payload.iat, ACCESS_TOKEN_TTL);
      return payload;
    }

    t_('metadata: RFC 8414 document with the issuer byte for byte', async () => {
      assert.equal(as.issuer, gh.issuer, 'issuer is the public URL exactly (no trailing slash)');
      assert.deepEqual(as.code_challenge_methods_supported, ['S256']);
      assert.equal(as.authorization_response_iss_parameter_supported, true);
      assert.ok(as.response_types_supported.includes('code'));
      for (const k of ['authorization_endpoint', 'token_endpoint', 'registration_endpoint', 'jwks_uri',
        'introspection_endpoint', 'revocation_endpoint']) {
        assert.equal(typeof as[k], 'string', `${k} advertised`);
        assert.ok(as[k].startsWith(`${gh.url}/`), `${k} on the issuer's origin`);
      }
    });

    t_('public client: code + PKCE + resource -> RFC 9068 JWT; refresh rotation; reuse revokes the family', async (t) => {
      const flow = await authorize();
      const tokens = await exchange(flow);
      assert.equal(tokens.token_type.toLowerCase(), 'bearer');
      assert.equal(tokens.expires_in, ACCESS_TOKEN_TTL);
      assert.ok(tokens.refresh_token, 'a refresh token is issued');
      const claims = await verifyAccessToken(tokens.access_token, flow.client);

      const first = tokens.refresh_token;
      const refreshed = await refresh(flow.client, flow.clientAuth, first);
      assert.ok(refreshed.refresh_token, 'refresh returns a new refresh token');
      assert.notEqual(refreshed.refresh_token, first, 'refresh token rotated');
      const claims2 = await verifyAccessToken(refreshed.access_token, flow.client);
      assert.equal(claims2.sub, claims.sub);
      assert.notEqual(claims2.jti, claims.jti);

      // Outside the retry grace window, the spent token is a stolen-token signal.
      t.diagnostic(`waiting ${REFRESH_GRACE_SECONDS + 2}s for the refresh grace window to pass`);
      await sleep((REFRESH_GRACE_SECONDS + 2) * 1000);
      const reuse = await oauthError(() => refresh(flow.client, flow.clientAuth, first));
      assert.equal(reuse.error, 'invalid_grant', `reuse of a rotated refresh token: ${reuse.error_description ?? ''}`);
      const dead = await oauthError(() => refresh(flow.client, flow.clientAuth, refreshed.refresh_token));
      assert.equal(dead.error, 'invalid_grant', 'the whole family is revoked after reuse');
    });

    t_('public client: a retried refresh inside the grace window does not revoke the family', async () => {
      const flow = await authorize();
      const tokens = await exchange(flow);
      const refreshed = await refresh(flow.client, flow.clientAuth, tokens.refresh_token);
      // Immediately presenting the spent token again looks like a client retry, not theft.
      const retry = await refresh(flow.client, flow.clientAuth, tokens.refresh_token).then(
        () => null,
        (e) => e,
      );
      if (retry) assert.equal(retry.error, 'invalid_grant', `retry inside grace: ${retry.message}`);
      const next = await refresh(flow.client, flow.clientAuth, refreshed.refresh_token);
      assert.ok(next.access_token, 'the newest refresh token still works');
    });

    t_('authorization code is single use; a replay revokes what it issued', async () => {
      const flow = await authorize();
      const tokens = await exchange(flow);
      const replay = await oauthError(() => exchange(flow));
      assert.equal(replay.error, 'invalid_grant');
      const dead = await oauthError(() => refresh(flow.client, flow.clientAuth, tokens.refresh_token));
      assert.equal(dead.error, 'invalid_grant', 'refresh token from the replayed code is revoked');
    });

    t_('confidential client: introspection, then revoking the refresh token kills the grant', async () => {
      const flow = await authorize({ auth: 'client_secret_basic' });
      assert.ok(flow.client.client_secret, 'DCR returns a client_secret for client_secret_basic');
      const tokens = await exchange(flow);
      await verifyAccessToken(tokens.access_token, flow.client);

      const introspect = async (token) => {
        const res = await oauth.introspectionRequest(as, flow.client, flow.clientAuth, token, INSECURE);
        return oauth.processIntrospectionResponse(as, flow.client, res);
      };
      const live = await introspect(tokens.access_token);
      assert.equal(live.active, true);
      const aud = Array.isArray(live.aud) ? live.aud : [live.aud];
      assert.ok(aud.includes(gh.mcpUrl), `introspection aud ${JSON.stringify(live.aud)}`);
      assert.deepEqual(new Set(live.scope.split(' ')), new Set(SCOPE.split(' ')));
      assert.equal(live.client_id, flow.client.client_id);

      const rev = await oauth.revocationRequest(as, flow.client, flow.clientAuth, tokens.refresh_token, {
        additionalParameters: { token_type_hint: 'refresh_token' },
        ...INSECURE,
      });
      await oauth.processRevocationResponse(rev);

      const dead = await oauthError(() => refresh(flow.client, flow.clientAuth, tokens.refresh_token));
      assert.equal(dead.error, 'invalid_grant');
      const after = await introspect(tokens.access_token);
      assert.equal(after.active, false, 'the access token carries the revoked grant');
    });

    t_('concurrent refreshes with one token: exactly one wins, the family survives', async () => {
      // Clients retry and race (several tabs, a retried request); DESIGN.md: rotation is atomic.
      const flow = await authorize();
      const tokens = await exchange(flow);
      const results = await Promise.allSettled(
        Array.from({ length: 4 }, () => refresh(flow.client, flow.clientAuth, tokens.refresh_token)),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
      assert.equal(won.length, 1, `one winner; errors: ${lost.map((e) => `${e.status} ${e.error ?? e.message}`).join('; ')}`);
      for (const e of lost) assert.equal(e.error, 'invalid_grant', `loser: ${e.status} ${e.message}`);
      const next = await refresh(flow.client, flow.clientAuth, won[0].value.refresh_token);
      assert.ok(next.access_token, "the winner's refresh token still works");
    });

    t_('confidential client with a wrong secret -> 401 invalid_client with a Basic challenge', async () => {
      const flow = await authorize({ auth: 'client_secret_basic' });
      const params = oauth.validateAuthResponse(as, flow.client, flow.callback, flow.req.state);
      const res = await oauth.authorizationCodeGrantRequest(as, flow.client, oauth.ClientSecretBasic('not-the-secret'),
        params, flow.redirectUri, flow.req.codeVerifier, { additionalParameters: { resource: gh.mcpUrl }, ...INSECURE });
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic/i);
      assert.equal((await res.json()).error, 'invalid_client');
    });

    t_('public client revokes its refresh token (RFC 7009) -> refresh fails', async () => {
      const flow = await authorize();
      const tokens = await exchange(flow);
      const rev = await oauth.revocationRequest(as, flow.client, flow.clientAuth, tokens.refresh_token, INSECURE);
      await oauth.processRevocationResponse(rev);
      const dead = await oauthError(() => refresh(flow.client, flow.clientAuth, tokens.refresh_token));
      assert.equal(dead.error, 'invalid_grant');
    });

    t_('DCR refuses a plain-http redirect URI that is not loopback', async () => {
      const reg = await register(as, {
        redirect_uris: ['http://example.com/callback'],
        token_endpoint_auth_method: 'none',
        client_name: 'e2e insecure redirect',
      });
      assert.equal(reg.status, 400, JSON.stringify(reg.body));
      assert.equal(reg.body.error, 'invalid_redirect_uri');
    });

    t_('loopback redirect URI: any port is accepted (RFC 8252 section 7.3)', async () => {
      // Registered on one port, used on another, as native apps that bind port 0 do.
      const flow = await authorize({ registered: await loopbackRedirectUri() });
      const tokens = await exchange(flow);
      await verifyAccessToken(tokens.access_token, flow.client);
    });

    t_('wrong PKCE code_verifier -> invalid_grant', async () => {
      const flow = await authorize();
      flow.req.codeVerifier = oauth.generateRandomCodeVerifier();
      const err = await oauthError(() => exchange(flow));
      assert.equal(err.error, 'invalid_grant');
    });

    t_('resource with an uppercase scheme and host is the same resource; aud stays canonical', async () => {
      const shouty = gh.mcpUrl.replace('http://127.0.0.1', 'HTTP://127.0.0.1');
      const flow = await authorize({ resource: shouty });
      const tokens = await exchange(flow, shouty);
      await verifyAccessToken(tokens.access_token, flow.client); // audience: gh.mcpUrl exactly
    });

    t_('refresh naming another resource -> invalid_target, and the refresh token is not spent', async () => {
      const flow = await authorize();
      const tokens = await exchange(flow);
      const res = await oauth.refreshTokenGrantRequest(as, flow.client, flow.clientAuth, tokens.refresh_token, {
        additionalParameters: { resource: gh.otherMcpUrl },
        ...INSECURE,
      });
      const err = await oauthError(() => oauth.processRefreshTokenResponse(as, flow.client, res));
      assert.equal(err.error, 'invalid_target');
      const ok = await refresh(flow.client, flow.clientAuth, tokens.refresh_token);
      assert.ok(ok.access_token);
    });

    t_('unregistered redirect URI -> error page, never a redirect (RFC 6749 section 4.1.2.1)', async () => {
      const reg = await register(as, {
        redirect_uris: [await loopbackRedirectUri()],
        token_endpoint_auth_method: 'none',
        client_name: 'e2e redirect check',
      });
      assert.equal(reg.status, 201);
      const req = await authorizationRequest(as, reg.body, {
        redirectUri: 'https://attacker.example/callback',
        resource: gh.mcpUrl,
        scope: SCOPE,
      });
      const page = await new Browser(gh.url).navigate(req.url);
      assert.equal(page.external, undefined, `must not redirect to ${page.external}`);
      assert.equal(page.status, 400);
    });

    t_('resource of a workspace the user is not in -> invalid_target at the redirect URI, with iss', async () => {
      const flow = await authorize({ resource: gh.otherMcpUrl });
      assert.equal(flow.callback.searchParams.get('iss'), gh.issuer);
      const err = await oauthError(() => oauth.validateAuthResponse(as, flow.client, flow.callback, flow.req.state));
      assert.equal(err.error, 'invalid_target');
    });

    t_('authorization request without PKCE -> invalid_request at the redirect URI', async () => {
      const flow = await authorize({ pkce: false });
      assert.equal(flow.callback.searchParams.get('iss'), gh.issuer);
      const err = await oauthError(() => oauth.validateAuthResponse(as, flow.client, flow.callback, flow.req.state));
      assert.equal(err.error, 'invalid_request');
    });

    t_('denying consent -> access_denied at the redirect URI, with iss', async () => {
      const flow = await authorize({ decision: 'deny' });
      const err = await oauthError(() => oauth.validateAuthResponse(as, flow.client, flow.callback, flow.req.state));
      assert.equal(err.error, 'access_denied');
    });
  });
}
