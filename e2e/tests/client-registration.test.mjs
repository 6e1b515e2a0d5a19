// How MCP clients get a client_id, with the real MCP TypeScript SDKs against the real binary:
//   - an SDK configured with `clientMetadataUrl` uses its Client ID Metadata Document (served here
//     over https on loopback, with gatehouse's loopback allowance on and the test CA trusted)
//     instead of Dynamic Client Registration, then lists and calls tools;
//   - a client removed by an operator is answered invalid_client, and the SDK registers again;
//   - the operator CLI: `gatehouse client add | list | remove`.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError as UnauthorizedErrorV1 } from '@modelcontextprotocol/sdk/client/auth.js';
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
  UnauthorizedError as UnauthorizedErrorV2,
} from '@modelcontextprotocol/client';
import { HeadlessOAuthProvider, toolText, within } from '../lib/mcp-oauth.mjs';
import { loopbackRedirectUri } from '../lib/oauth.mjs';
import { backends, startGatehouse, withLogs } from '../lib/server.mjs';

const STEP_MS = 60_000;
const CLIENT_INFO = { name: 'gatehouse-e2e-registration', version: '0.0.0' };
const DOCUMENT_PATH = '/e2e/client-metadata.json';

/** The headless provider, plus what a real app adds: a metadata URL, and forgetting credentials. */
class RegistrationProvider extends HeadlessOAuthProvider {
  constructor({ clientMetadataUrl, ...opts }) {
    super(opts);
    this._clientMetadataUrl = clientMetadataUrl;
    /** What the SDK asked to forget, in order ('all', 'client', 'tokens', 'verifier'). */
    this.invalidated = [];
  }

  static async create(opts) {
    return new RegistrationProvider({ redirectUri: await loopbackRedirectUri(), ...opts });
  }

  get clientMetadataUrl() {
    return this._clientMetadataUrl;
  }

  // The SDK calls this on invalid_client (forget everything) and invalid_grant (forget tokens).
  invalidateCredentials(scope) {
    this.invalidated.push(scope);
    if (scope === 'all' || scope === 'client') this._client = undefined;
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
  }
}

// A throwaway CA and a certificate for localhost / 127.0.0.1 signed by it, made with openssl.
async function makeCertificates(dir) {
  const run = promisify(execFile);
  const p = (f) => path.join(dir, f);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2',
    '-subj', '/CN=gatehouse e2e test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', ['req', ...ec, '-keyout', p('leaf.key'), '-out', p('leaf.csr'), '-subj', '/CN=localhost']);
  await writeFile(p('leaf.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' +
    'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  await run('openssl', ['x509', '-req', '-in', p('leaf.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'),
    '-CAcreateserial', '-out', p('leaf.pem'), '-days', '2', '-extfile', p('leaf.ext')]);
  return { caFile: p('ca.pem'), key: await readFile(p('leaf.key')), cert: await readFile(p('leaf.pem')) };
}

// An https server on loopback that serves metadata documents and counts requests per path.
async function startDocumentServer({ key, cert }) {
  const documents = new Map();
  const hits = new Map();
  const server = https.createServer({ key, cert }, (req, res) => {
    const url = new URL(req.url, 'https://localhost');
    hits.set(url.pathname, (hits.get(url.pathname) ?? 0) + 1);
    const doc = documents.get(url.pathname);
    if (!doc) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' }).end(JSON.stringify(doc));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `https://localhost:${server.address().port}`;
  return {
    origin,
    hits: (p) => hits.get(p) ?? 0,
    /** Publishes `doc` at `p` with its client_id set to its URL; returns the URL. */
    publish(p, doc) {
      const url = `${origin}${p}`;
      documents.set(p, { ...doc, client_id: url });
      return url;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** Lines of `gatehouse client list`: [{id, source, name, kind, used, reach}]. */
async function listClients(gh, source) {
  const { stdout } = await gh.cli(['client', 'list', ...(source ? ['--source', source] : [])]);
  return stdout.split('\n').filter(Boolean).map((line) => {
    const [id, src, name, kind, used, reach] = line.split('\t');
    return { id, source: src, name, kind, used, reach };
  });
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'gh-e2e-tls-'));
const certs = await makeCertificates(tmp);
after(() => rm(tmp, { recursive: true, force: true }));

for (const backend of backends()) {
  describe(`client registration against gatehouse [${backend}]`, () => {
    let gh;
    let docs;
    const t_ = (name, fn) => test(name, { timeout: 3 * STEP_MS }, withLogs(() => gh, fn));
    const open = new Set();

    before(async () => {
      docs = await startDocumentServer(certs);
      gh = await startGatehouse({
        backend,
        env: { GATEHOUSE_CIMD_ALLOW_LOOPBACK_HOSTS: 'localhost', GATEHOUSE_CIMD_CA_FILE: certs.caFile },
      });
    });
    after(async () => {
      for (const c of open) await c.close().catch(() => {});
      await gh?.stop();
      await docs?.close();
    });

    // The journey an SDK app makes: connect (sent to the AS), finish with the code, connect again.
    async function connect({ Client, Transport, Unauthorized, provider, finish }) {
      const first = new Transport(new URL(gh.mcpUrl), { authProvider: provider });
      const c1 = new Client(CLIENT_INFO);
      const err = await within(STEP_MS, c1.connect(first), 'connect without tokens').then(() => null, (e) => e);
      await c1.close().catch(() => {});
      assert.ok(err instanceof Unauthorized, `expected UnauthorizedError, got ${err?.stack ?? 'success'}`);
      await within(STEP_MS, finish(first, provider), 'finishAuth');
      const transport = new Transport(new URL(gh.mcpUrl), { authProvider: provider });
      const client = new Client(CLIENT_INFO);
      open.add(client);
      await within(STEP_MS, client.connect(transport), 'connect with tokens');
      return { client, transport };
    }

    async function echoAndWhoami(client, text) {
      const echoed = await within(STEP_MS, client.callTool({ name: 'echo', arguments: { text } }), 'echo');
      assert.equal(toolText(echoed), text);
      const who = await within(STEP_MS, client.callTool({ name: 'whoami', arguments: {} }), 'whoami');
      return JSON.parse(toolText(who));
    }

    const sdks = [
      ['sdk v1', { Client: ClientV1, Transport: TransportV1, Unauthorized: UnauthorizedErrorV1,
        finish: (t, p) => t.finishAuth(p.lastCode) }],
      ['sdk v2', { Client: ClientV2, Transport: TransportV2, Unauthorized: UnauthorizedErrorV2,
        finish: (t, p) => t.finishAuth(p.lastCallback) }],
    ];
    for (const [label, sdk] of sdks) {
      t_(`${label} with clientMetadataUrl registers by metadata document, not DCR`, async () => {
        const docPath = `${DOCUMENT_PATH}-${label.replace(' ', '-')}`;
        // Port-less loopback redirect: the SDK's callback port is not known when publishing.
        const metadataUrl = docs.publish(docPath, {
          client_name: `e2e ${label} (metadata document)`,
          redirect_uris: ['http://127.0.0.1/callback'],
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          token_endpoint_auth_method: 'none',
        });
        const before = await listClients(gh);
        const provider = await RegistrationProvider.create({ gh, clientName: `e2e ${label}`, clientMetadataUrl: metadataUrl });
        const { client } = await connect({ ...sdk, provider });

        assert.equal(provider.clientInformation().client_id, metadataUrl, 'the SDK used its metadata URL as client_id');
        assert.equal(provider.authorizationUrls[0].searchParams.get('client_id'), metadataUrl);
        assert.ok(docs.hits(docPath) >= 1, 'gatehouse fetched the document');
        const after = await listClients(gh);
        const added = after.filter((c) => !before.some((b) => b.id === c.id));
        assert.deepEqual(added.map((c) => [c.id, c.source, c.kind]), [[metadataUrl, 'metadata_document', 'public']],
          'the only new client is the metadata document; nothing registered by DCR');
        const me = await echoAndWhoami(client, `hello from ${label} via CIMD`);
        assert.equal(me.client_id, metadataUrl);
        assert.ok(provider.tokens().refresh_token, 'the document lists refresh_token');
        await client.close();
        open.delete(client);
      });
    }

    t_('sdk v1: a client removed by the operator gets invalid_client, and the SDK registers again', async () => {
      const provider = await RegistrationProvider.create({ gh, clientName: 'e2e removed client' });
      const { client } = await connect({ ...sdks[0][1], provider });
      const first = provider.clientInformation().client_id;
      assert.doesNotMatch(first, /^https:/, 'registered by DCR');
      await echoAndWhoami(client, 'before removal');
      await client.close();
      open.delete(client);

      const removed = await gh.cli(['client', 'remove', first]);
      assert.match(removed.stdout, /removed client/);
      // The stored access token is now refused (its grant went with the client), so the SDK
      // refreshes, is told invalid_client, forgets the client, registers again and sends the
      // person to authorize once more.
      const transport = new TransportV1(new URL(gh.mcpUrl), { authProvider: provider });
      const again = new ClientV1(CLIENT_INFO);
      const err = await within(STEP_MS, again.connect(transport), 'connect after removal').then(() => null, (e) => e);
      await again.close().catch(() => {});
      assert.ok(err instanceof UnauthorizedErrorV1, `expected UnauthorizedError, got ${err?.stack ?? 'success'}`);
      assert.deepEqual(provider.invalidated, ['all'], 'invalid_client made the SDK forget the client');
      const second = provider.clientInformation().client_id;
      assert.notEqual(second, first, 'a new registration');
      assert.equal(provider.authorizationUrls.length, 2);
      await within(STEP_MS, transport.finishAuth(provider.lastCode), 'finishAuth after re-registration');
      const t2 = new TransportV1(new URL(gh.mcpUrl), { authProvider: provider });
      const c2 = new ClientV1(CLIENT_INFO);
      open.add(c2);
      await within(STEP_MS, c2.connect(t2), 'connect with the new client');
      const me = await echoAndWhoami(c2, 'after re-registration');
      assert.equal(me.client_id, second);
      await c2.close();
      open.delete(c2);
    });

    t_('operator CLI: client add (authorization code, public or confidential), list, remove', async () => {
      const confidential = await gh.cli(['client', 'add', '--name', 'Team portal',
        '--redirect-uri', 'https://portal.example/callback', '--redirect-uri', 'http://127.0.0.1/callback']);
      const id = confidential.stdout.match(/client_id: (\S+)/)?.[1];
      const secret = confidential.stdout.match(/client_secret: (gh_cs_\S+)\s+\(shown once\)/)?.[1];
      assert.ok(id && secret, confidential.stdout);
      const pub = await gh.cli(['client', 'add', '--name', 'Desktop app', '--public', '--redirect-uri', 'myapp://cb']);
      const pubId = pub.stdout.match(/client_id: (\S+)/)?.[1];
      assert.doesNotMatch(pub.stdout, /client_secret/);
      const machine = await gh.cli(['client', 'add', '--name', 'CI bot', '--workspace', 'default']);
      assert.match(machine.stdout, /client_secret: gh_cs_/);

      const admin = await listClients(gh, 'admin');
      const byId = Object.fromEntries(admin.map((c) => [c.id, c]));
      assert.equal(byId[id]?.kind, 'confidential');
      assert.equal(byId[id]?.reach, 'https://portal.example/callback http://127.0.0.1/callback');
      assert.equal(byId[pubId]?.kind, 'public');
      assert.equal(byId[pubId]?.used, 'never used');
      const { stdout: listed } = await gh.cli(['client', 'list']);
      assert.ok(!listed.includes(secret), 'secrets are never listed');

      // The secret works at the token endpoint (client_credentials is not this client's grant).
      const res = await fetch(`${gh.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` },
        body: 'grant_type=client_credentials',
      });
      assert.equal(res.status, 400);
      assert.equal((await res.json()).error, 'unauthorized_client', 'authenticated, then refused the grant');

      // Bad input: refused with the reason, nothing created.
      const bad = await gh.cli(['client', 'add', '--name', 'Bad', '--redirect-uri', 'javascript:alert(1)']).then(
        () => null, (e) => e);
      assert.ok(bad, 'a javascript: redirect URI is refused');
      assert.match(bad.message, /javascript/);
      const both = await gh.cli(['client', 'add', '--name', 'X', '--workspace', 'default', '--redirect-uri', 'https://a.example/cb'])
        .then(() => null, (e) => e);
      assert.ok(both, '--workspace and --redirect-uri do not mix');
      assert.equal((await listClients(gh, 'admin')).length, admin.length);

      await gh.cli(['client', 'remove', id]);
      assert.ok(!(await listClients(gh, 'admin')).some((c) => c.id === id));
      const again = await gh.cli(['client', 'remove', id]).then(() => null, (e) => e);
      assert.match(again?.message ?? '', /no client/);
    });
  });
}
