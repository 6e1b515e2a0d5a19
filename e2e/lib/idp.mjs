// The organisation's identity provider for the OIDC sign-in tests: `oidc-provider` (a certified
// OpenID Provider) on loopback, with its development login and consent pages, one confidential
// client (Gatehouse), and accounts whose `groups` claim a test can change between sign-ins.
// (Another helper, external-as.mjs, runs oidc-provider as an authorization server for another
// feature; this one is only the sign-in IdP.)

import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Provider from 'oidc-provider';
import { freePort } from './server.mjs';

export const IDP_CLIENT_ID = 'gatehouse-e2e';
export const IDP_CLIENT_SECRET_ENV = 'E2E_IDP_CLIENT_SECRET';
const CLIENT_SECRET = 'e2e-idp-client-secret-0123456789abcdef';

/**
 * Picks the IdP's port now (Gatehouse's settings name its issuer before it starts), and writes a
 * gatehouse.toml with the provider. Call `listen(gatehouseUrl)` once Gatehouse's URL is known.
 * @param {{accounts: Record<string, {email: string, groups: string[]}>, groupRoles: {group:string, workspace:string, role?:string}[]}} o
 */
export async function prepareIdp({ accounts, groupRoles }) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-idp-'));
  const configFile = path.join(dir, 'gatehouse.toml');
  const roles = groupRoles
    .map((g) => `  { group = "${g.group}", workspace = "${g.workspace}", role = "${g.role ?? 'member'}" },`)
    .join('\n');
  await writeFile(
    configFile,
    `oidc_allow_loopback_issuers = true

[[oidc_providers]]
id = "corp"
name = "Corp IdP"
issuer = "${issuer}"
client_id = "${IDP_CLIENT_ID}"
client_secret_env = "${IDP_CLIENT_SECRET_ENV}"
scopes = ["openid", "email", "groups"]
allowed_email_domains = ["corp.example"]
groups_claim = "groups"
group_roles = [
${roles}
]
`,
  );
  let server = null;
  /** Codes redeemed at the token endpoint (by Gatehouse), successful and not. */
  const tokenRequests = { ok: 0, failed: 0 };

  return {
    issuer,
    accounts,
    /** Settings for startGatehouse({env}). */
    gatehouseEnv: { GATEHOUSE_CONFIG: configFile, [IDP_CLIENT_SECRET_ENV]: CLIENT_SECRET },
    tokenRequests,
    async listen(gatehouseUrl) {
      const provider = new Provider(issuer, {
        clients: [
          {
            client_id: IDP_CLIENT_ID,
            client_secret: CLIENT_SECRET,
            redirect_uris: [`${gatehouseUrl}/login/oidc/corp/callback`],
            grant_types: ['authorization_code'],
            response_types: ['code'],
            token_endpoint_auth_method: 'client_secret_basic',
          },
        ],
        claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
        scopes: ['openid', 'email', 'groups'],
        // The claims go into the ID token itself (Gatehouse does not call userinfo).
        conformIdTokenClaims: false,
        features: { devInteractions: { enabled: true } },
        pkce: { required: () => true },
        ttl: { Interaction: 600, Session: 3_600, Grant: 3_600, AccessToken: 300, IdToken: 300 },
        // Read the account at every token: a group change shows at the next sign-in.
        findAccount: (_ctx, id) => {
          const account = accounts[id];
          if (!account) return undefined;
          return {
            accountId: id,
            claims: () => ({ sub: id, email: account.email, email_verified: true, groups: [...account.groups] }),
          };
        },
      });
      provider.on('grant.success', () => (tokenRequests.ok += 1));
      provider.on('grant.error', () => (tokenRequests.failed += 1));
      server = http.createServer(provider.callback());
      await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
    },
    async stop() {
      if (server) await new Promise((resolve) => server.close(resolve));
      server?.closeAllConnections?.();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * In chromium: on Gatehouse's login page, continue with the IdP, sign in there as `login` (the
 * development login takes any password) and approve its consent, if it asks; waits until the
 * browser is back on Gatehouse.
 */
export async function signInAtIdp(page, { gatehouseUrl, issuer, login }) {
  await page.getByRole('link', { name: 'Continue with Corp IdP' }).click();
  await page.waitForURL((u) => u.href.startsWith(issuer) || u.href.startsWith(gatehouseUrl));
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
