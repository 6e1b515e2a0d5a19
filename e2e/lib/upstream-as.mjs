// The authorization server of an upstream service, for the credential vault tests: a real
// `oidc-provider` on loopback with its own login and consent pages (devInteractions), one public
// client (Gatehouse's vault, redirecting to /oauth/upstream/callback), PKCE, resource indicators
// (RFC 8707: JWT access tokens whose audience is the upstream MCP server), a SHORT access token
// lifetime so that tokens expire during a test, refresh tokens rotated at every use, and the
// revocation endpoint. Every token request is recorded (grant type and outcome).

import http from 'node:http';
import Provider, { errors } from 'oidc-provider';
import { freePort } from './server.mjs';

export const VAULT_CLIENT_ID = 'gatehouse-vault';
export const UPSTREAM_SCOPE = 'files:read';

/**
 * Picks the port (the issuer URL) now; `listen({gatehouseUrl, resource})` starts the provider
 * once Gatehouse's URL and the upstream MCP server's URL (the only resource indicator it
 * accepts) are known.
 * @param {{accessTokenTtl: number}} o  seconds an access token lives
 */
export async function prepareUpstreamAs({ accessTokenTtl }) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  let server = null;
  let provider = null;
  /** Token endpoint outcomes, in order: {grant_type, ok, error?}. */
  const tokenRequests = [];
  /** Refresh tokens issued, newest last (their values, for the revocation endpoint). */
  const refreshTokens = [];

  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    tokenRequests,
    refreshTokens,
    /** Starts the provider, with Gatehouse's callback and the upstream's URL known. */
    async listen({ gatehouseUrl, resource }) {
      provider = new Provider(issuer, {
        clients: [
          {
            client_id: VAULT_CLIENT_ID,
            token_endpoint_auth_method: 'none',
            redirect_uris: [`${gatehouseUrl}/oauth/upstream/callback`],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
          },
        ],
        cookies: { keys: ['e2e-upstream-as-cookie-key'] },
        scopes: ['openid', 'offline_access', UPSTREAM_SCOPE],
        findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
        features: {
          devInteractions: { enabled: true },
          // Only the client a token was issued to may revoke it.
          revocation: { enabled: true, allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId },
          resourceIndicators: {
            enabled: true,
            defaultResource: () => undefined,
            useGrantedResource: () => true,
            getResourceServerInfo: (_ctx, indicator) => {
              if (indicator !== resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
              return {
                scope: UPSTREAM_SCOPE,
                audience: resource,
                accessTokenTTL: accessTokenTtl,
                accessTokenFormat: 'jwt',
              };
            },
          },
        },
        pkce: { required: () => true },
        // Refresh tokens for this (non-OIDC) client without offline_access, like many OAuth
        // services; rotated at every use.
        issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
        rotateRefreshToken: () => true,
        ttl: { AccessToken: accessTokenTtl, AuthorizationCode: 60, Grant: 3_600, Interaction: 600, RefreshToken: 86_400, Session: 3_600 },
      });
      provider.on('grant.success', (ctx) => tokenRequests.push({ grant_type: ctx.oidc.params.grant_type, ok: true }));
      provider.on('grant.error', (ctx, error) =>
        tokenRequests.push({ grant_type: ctx.oidc.params?.grant_type, ok: false, error: error.error }),
      );
      provider.on('refresh_token.saved', (token) => refreshTokens.push(token.jti));
      server = http.createServer(provider.callback());
      await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
    },
    /**
     * The upstream revokes the latest refresh token at its revocation endpoint (RFC 7009), as
     * when the person removes the app at the service; oidc-provider then ends the whole grant.
     */
    async revokeLatestRefreshToken() {
      const token = refreshTokens.at(-1);
      if (!token) throw new Error('no refresh token was issued');
      const res = await fetch(`${issuer}/token/revocation`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token, token_type_hint: 'refresh_token', client_id: VAULT_CLIENT_ID }).toString(),
      });
      if (res.status !== 200) throw new Error(`revocation failed: ${res.status} ${await res.text()}`);
      return token;
    },
    async stop() {
      if (server) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  };
}

/**
 * In chromium, on the provider's own pages (the browser is there already): sign in as `login`
 * (the development login takes any password) and approve the consent; waits until the browser
 * is back on Gatehouse.
 */
export async function approveAtUpstream(page, { gatehouseUrl, issuer, login }) {
  for (let step = 0; step < 3 && page.url().startsWith(issuer); step++) {
    const before = page.url();
    const left = page.waitForURL((u) => u.href !== before);
    const loginField = page.locator('input[name="login"]');
    if (await loginField.count()) {
      await loginField.fill(login);
      await page.locator('input[name="password"]').fill('any password');
      await page.getByRole('button', { name: 'Sign-in' }).click();
    } else {
      await page.getByRole('button', { name: 'Continue' }).click();
    }
    await left;
  }
  await page.waitForURL((u) => u.href.startsWith(gatehouseUrl));
}
