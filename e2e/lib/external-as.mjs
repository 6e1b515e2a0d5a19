// An external authorization server for the "trust an external issuer" tests: a real
// `oidc-provider` (npm) with resource indicators (RFC 8707) and JWT access tokens for each
// resource, dynamic client registration and client_credentials. Its login and consent
// interactions are answered here, as "the user" (always `carol`), granting what was asked.
// Keys can be rotated without changing the issuer URL: a new Provider instance with the new
// key takes over the same port (oidc-provider's in-memory storage is shared by instances, so
// clients and grants survive); the old key is no longer published.
//
// Also: the example resource server of the mcp-resource-guard crate, started as a process.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';
import { Browser } from './browser.mjs';
import { HeadlessOAuthProvider } from './mcp-oauth.mjs';
import { loopbackRedirectUri } from './oauth.mjs';
import { freePort } from './server.mjs';

export const ACCOUNT = 'carol';
const RESOURCE_SCOPES = 'mcp:read mcp:tools mcp:resources';

async function signingKey() {
  const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  const kid = `k-${randomBytes(6).toString('hex')}`;
  return { kid, privateKey, jwk: { ...jwk, kid, alg: 'ES256', use: 'sig' } };
}

function configuration(key) {
  return {
    jwks: { keys: [key.jwk] },
    cookies: { keys: ['e2e-cookie-key-not-secret'] },
    // The one key is an ES256 key, so ID tokens (if any) are ES256 too.
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    // The MCP SDK registers with the scopes of the challenge in its client metadata, which
    // oidc-provider checks against this list; the tokens' scopes come from the resource server below.
    scopes: ['openid', 'offline_access', ...RESOURCE_SCOPES.split(' ')],
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    pkce: { required: () => true },
    ttl: { AccessToken: 300, AuthorizationCode: 60, ClientCredentials: 300, Grant: 3600, IdToken: 3600, Interaction: 600, RefreshToken: 86400, Session: 3600 },
    clientBasedCORS: () => true,
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          // Only loopback MCP servers (the gateway and the example) are resource servers here.
          if (!/^http:\/\/127\.0\.0\.1:\d+\//.test(resourceIndicator)) throw new errors.InvalidTarget();
          return {
            scope: RESOURCE_SCOPES,
            audience: resourceIndicator,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
  };
}

/**
 * @returns {Promise<{issuer: string, kid: () => string, interactions: string[], rotate: () => Promise<void>,
 *   forge: (o: {aud: string, scope?: string, exp?: number, iss?: string}) => Promise<string>,
 *   clientCredentialsToken: (resource: string, scope?: string) => Promise<string>, stop: () => Promise<void>}>}
 */
export async function startExternalIssuer() {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  let key = await signingKey();
  let provider = new Provider(issuer, configuration(key));
  /** What the "user" answered, in order: `login`, `consent`. */
  const interactions = [];

  async function interaction(req, res) {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params, session, grantId } = details;
    interactions.push(prompt.name);
    if (prompt.name === 'login') {
      return provider.interactionFinished(req, res, { login: { accountId: ACCOUNT } }, { mergeWithLastSubmission: false });
    }
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const saved = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId: saved } }, { mergeWithLastSubmission: true });
  }

  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((e) => {
        res.statusCode = 500;
        res.end(String(e));
      });
      return;
    }
    provider.callback()(req, res);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));

  async function register(metadata) {
    const res = await fetch(`${issuer}/reg`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(metadata),
    });
    if (res.status !== 201) throw new Error(`registration failed: ${res.status} ${await res.text()}`);
    return res.json();
  }

  return {
    issuer,
    interactions,
    kid: () => key.kid,
    /** A new signing key at the same issuer; the old key is no longer published. */
    async rotate() {
      key = await signingKey();
      provider = new Provider(issuer, configuration(key));
    },
    /** A token signed with the issuer's current key but with claims of the test's choosing. */
    async forge({ aud, scope = 'mcp:read mcp:tools', exp, iss = issuer }) {
      const now = Math.floor(Date.now() / 1000);
      return new jose.SignJWT({ scope, client_id: 'forged' })
        .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'at+jwt' })
        .setIssuer(iss)
        .setSubject(ACCOUNT)
        .setAudience(aud)
        .setIssuedAt(now - 600)
        .setExpirationTime(exp ?? now + 300)
        .sign(key.privateKey);
    },
    /** A real access token of this issuer for `resource`, through the client_credentials grant. */
    async clientCredentialsToken(resource, scope = 'mcp:read mcp:tools') {
      const client = await register({
        client_name: 'e2e machine client',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      });
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }).toString(),
      });
      const body = await res.json();
      if (!res.ok) throw new Error(`client_credentials failed: ${JSON.stringify(body)}`);
      return body.access_token;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * An OAuthClientProvider for the MCP SDK whose "user" is at the external issuer: it follows the
 * authorization redirects through oidc-provider's interactions (answered by startExternalIssuer)
 * back to the client's loopback callback.
 */
export class ExternalIssuerOAuthProvider extends HeadlessOAuthProvider {
  /** @param {{issuer: {issuer: string}, clientName?: string}} o */
  static async create({ issuer, ...opts }) {
    // The base class's "browser" is bound to gh.url: here, the external issuer.
    return new ExternalIssuerOAuthProvider({ gh: { url: issuer.issuer }, redirectUri: await loopbackRedirectUri(), ...opts });
  }

  async redirectToAuthorization(authorizationUrl) {
    const url = new URL(authorizationUrl);
    this.authorizationUrls.push(url);
    const result = await this.browser.navigate(url.toString());
    if (!result.external) throw new Error(`the issuer showed a page instead of redirecting: ${result.status} ${result.html}`);
    const callback = new URL(result.external);
    if (`${callback.origin}${callback.pathname}` !== this.redirectUrl) {
      throw new Error(`the issuer redirected to ${callback}, not to ${this.redirectUrl}`);
    }
    if (this._state !== undefined && callback.searchParams.get('state') !== this._state) {
      throw new Error(`state mismatch in callback ${callback}`);
    }
    this.callbacks.push(callback);
  }
}

/** The example server of crates/mcp-resource-guard, built by `cargo build --example protected_server`. */
export function exampleBin() {
  if (process.env.GUARD_EXAMPLE_BIN) return process.env.GUARD_EXAMPLE_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/gatehouse-target');
  return path.join(target, 'debug/examples/protected_server');
}

/** Starts the example MCP server protected against `issuer`; resolves once it listens. */
export async function startExampleServer(issuer) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/mcp`;
  const child = spawn(exampleBin(), [], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      GUARD_ISSUER: issuer,
      GUARD_LISTEN: `127.0.0.1:${port}`,
      GUARD_ALLOW_HTTP_LOOPBACK: '1',
      GUARD_JWKS_MIN_REFETCH: '1',
    },
  });
  let logs = '';
  child.stdout.on('data', (d) => (logs += d));
  child.stderr.on('data', (d) => (logs += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  for (let i = 0; i < 100 && !logs.includes('protected MCP server at'); i++) {
    if (child.exitCode !== null) throw new Error(`example server exited: ${logs}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!logs.includes('protected MCP server at')) throw new Error(`example server did not start: ${logs}`);
  return {
    url,
    logs: () => logs,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
