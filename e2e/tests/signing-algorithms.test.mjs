// Access tokens signed with each selectable algorithm (GATEHOUSE_SIGNING_ALG) verify with jose
// against the published JWKS: RS256 is covered by oauth-flow; here ES256 and EdDSA.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';
import { backends, startGatehouse, withLogs } from '../lib/server.mjs';
import { Browser, authorizeInBrowser } from '../lib/browser.mjs';
import { INSECURE, authorizationRequest, discover, loopbackRedirectUri, register } from '../lib/oauth.mjs';

for (const backend of backends()) {
  for (const alg of ['ES256', 'EdDSA']) {
    describe(`${alg} access tokens [${backend}]`, () => {
      let gh;
      before(async () => {
        gh = await startGatehouse({ backend, env: { GATEHOUSE_SIGNING_ALG: alg } });
      });
      after(async () => {
        await gh?.stop();
      });

      test('metadata, JWKS and the token agree, and jose verifies it', withLogs(() => gh, async () => {
        const as = await discover(gh.issuer);
        assert.deepEqual(as.access_token_signing_alg_values_supported, [alg]);
        const redirectUri = await loopbackRedirectUri();
        const reg = await register(as, { redirect_uris: [redirectUri], token_endpoint_auth_method: 'none', client_name: alg });
        assert.equal(reg.status, 201);
        const client = reg.body;
        const req = await authorizationRequest(as, client, { redirectUri, resource: gh.mcpUrl, scope: 'mcp:read' });
        const location = await authorizeInBrowser(new Browser(gh.url), req.url, { email: gh.email, password: gh.password });
        const params = oauth.validateAuthResponse(as, client, new URL(location), req.state);
        const res = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, redirectUri, req.codeVerifier, {
          additionalParameters: { resource: gh.mcpUrl },
          ...INSECURE,
        });
        const tokens = await oauth.processAuthorizationCodeResponse(as, client, res);

        const jwksRes = await fetch(as.jwks_uri);
        const { keys } = await jwksRes.json();
        assert.equal(keys.length, 1);
        assert.equal(keys[0].alg, alg);
        assert.ok(!('d' in keys[0]), 'no private key material in the JWKS');

        const { payload, protectedHeader } = await jose.jwtVerify(tokens.access_token, jose.createRemoteJWKSet(new URL(as.jwks_uri)), {
          issuer: gh.issuer,
          audience: gh.mcpUrl,
          typ: 'at+jwt',
          algorithms: [alg],
        });
        assert.equal(protectedHeader.alg, alg);
        assert.equal(protectedHeader.kid, keys[0].kid);
        assert.equal(payload.scope, 'mcp:read');
      }));
    });
  }
}
