// An upstream MCP server that demands its own tokens, for the credential vault tests: Streamable
// HTTP (@modelcontextprotocol/sdk 1.x, stateless: a fresh server per request) behind the SDK's
// requireBearerAuth, whose verifier checks the JWT access token with `jose` against the
// authorization server's JWKS (issuer, audience = this server's URL, at+jwt, expiry). Without a
// valid token it answers 401 with a WWW-Authenticate challenge naming its protected resource
// metadata (RFC 9728), which names the authorization server. Its one tool, `whoami`, answers with
// the subject and id of the token it was called with, so a test sees whose token arrived.

import http from 'node:http';
import express from 'express';
import * as jose from 'jose';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';

/**
 * @param {{issuer: string, jwksUri: string, scope: string}} o  the authorization server, and the scope a token must carry
 * @returns {Promise<{url: string, metadataUrl: string, seen: {sub: string, jti: string, exp: number}[],
 *   refused: string[], stop: () => Promise<void>}>}
 */
export async function startProtectedUpstream({ issuer, jwksUri, scope }) {
  const app = express();
  app.use(express.json());
  const server = http.createServer(app);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const url = `${origin}/mcp`;
  const metadataUrl = `${origin}/.well-known/oauth-protected-resource/mcp`;
  const jwks = jose.createRemoteJWKSet(new URL(jwksUri));
  /** The tokens whose tool calls were answered, in order. */
  const seen = [];
  /** Why each refused request was refused, in order. */
  const refused = [];

  const verifier = {
    async verifyAccessToken(token) {
      try {
        const { payload } = await jose.jwtVerify(token, jwks, { issuer, audience: url, typ: 'at+jwt' });
        return {
          token,
          clientId: String(payload.client_id ?? ''),
          scopes: String(payload.scope ?? '').split(' ').filter(Boolean),
          expiresAt: payload.exp,
          resource: new URL(url),
          extra: { sub: payload.sub, jti: payload.jti },
        };
      } catch (e) {
        refused.push(e.code ?? e.message);
        throw new InvalidTokenError(`token refused: ${e.code ?? e.message}`);
      }
    },
  };

  app.get('/.well-known/oauth-protected-resource/mcp', (_req, res) => {
    res.json({ resource: url, authorization_servers: [issuer], scopes_supported: scope.split(' '), bearer_methods_supported: ['header'] });
  });

  const guard = requireBearerAuth({ verifier, requiredScopes: scope.split(' '), resourceMetadataUrl: metadataUrl, expectedResource: new URL(url) });
  app.post('/mcp', guard, async (req, res) => {
    const mcp = new McpServer({ name: 'vaulted-upstream', version: '0.0.0' });
    mcp.registerTool('whoami', { description: 'Whose upstream token called this tool' }, async (extra) => {
      const { sub, jti } = extra.authInfo.extra;
      seen.push({ sub, jti, exp: extra.authInfo.expiresAt });
      return { content: [{ type: 'text', text: JSON.stringify({ sub, jti }) }] };
    });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      transport.close();
      mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  // Stateless: no standalone SSE stream and no session to end.
  app.all('/mcp', guard, (_req, res) => res.status(405).set('allow', 'POST').end());

  return {
    url,
    metadataUrl,
    seen,
    refused,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
