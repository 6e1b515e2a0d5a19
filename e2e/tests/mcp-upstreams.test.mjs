// MCP SDK clients against every kind of upstream, through the gateway: the `default` workspace
// gets, beside the built-in demo server, the upstream test server (e2e/upstream/) twice: over
// Streamable HTTP (`upstream add --url`) and as a stdio child process (`upstream add
// --command`). With three upstreams, names carry their upstream's prefix.
//   - @modelcontextprotocol/sdk 1.x and @modelcontextprotocol/client 2.x, each given only the
//     MCP URL (discovery, registration, login + consent, token), list the merged tools and call
//     a tool of each upstream; server-to-client requests (sampling, elicitation) and progress
//     cross the gateway both ways, over HTTP and over stdio.
//   - Stateless (2026-07-28) requests reuse the gateway's upstream connections: many requests,
//     one stdio child and one upstream handshake per principal.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError as UnauthorizedErrorV1 } from '@modelcontextprotocol/sdk/client/auth.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
  UnauthorizedError as UnauthorizedErrorV2,
} from '@modelcontextprotocol/client';
import { HeadlessOAuthProvider, toolText, within } from '../lib/mcp-oauth.mjs';
import { backends, startGatehouse, withLogs } from '../lib/server.mjs';
import { startUpstreamHttp, stdioCommand } from '../lib/upstream.mjs';

const STEP_MS = 60_000;
const CLIENT_INFO = { name: 'gatehouse-e2e-upstreams', version: '0.0.0' };
const STATELESS = '2026-07-28';

const SDKS = {
  v1: { Client: ClientV1, Transport: TransportV1, Unauthorized: UnauthorizedErrorV1, finish: (p) => p.lastCode },
  v2: { Client: ClientV2, Transport: TransportV2, Unauthorized: UnauthorizedErrorV2, finish: (p) => p.lastCallback },
};

for (const backend of backends()) {
  describe(`MCP clients through the gateway to HTTP, stdio and demo upstreams [${backend}]`, () => {
    let gh;
    let upstream;
    let scratch;
    let spawnLog;
    const open = new Set();
    const t_ = (name, fn) => test(name, { timeout: 4 * STEP_MS }, withLogs(() => gh, fn));

    before(async () => {
      scratch = await mkdtemp(path.join(os.tmpdir(), 'gh-e2e-upstreams-'));
      spawnLog = path.join(scratch, 'stdio-spawns.log');
      upstream = await startUpstreamHttp();
      gh = await startGatehouse({ backend });
      await gh.cli(['upstream', 'add', 'default', 'web', '--url', upstream.url]);
      await gh.cli(['upstream', 'add', 'default', 'local', '--command', stdioCommand({ spawnLog })]);
    });
    after(async () => {
      for (const c of open) await c.close().catch(() => {});
      await gh?.stop();
      await upstream?.stop();
      if (scratch) await rm(scratch, { recursive: true, force: true });
    });

    /** Connects an SDK client the way an app would: the first attempt sends the user to sign in. */
    async function connect(sdk, capabilities = {}) {
      const { Client, Transport, Unauthorized, finish } = SDKS[sdk];
      const provider = await HeadlessOAuthProvider.create({ gh, clientName: `e2e upstreams ${sdk}` });
      const first = new Client(CLIENT_INFO);
      const refused = await within(STEP_MS, first.connect(new Transport(new URL(gh.mcpUrl), { authProvider: provider })), `${sdk} first connect`).then(
        () => null,
        (e) => e,
      );
      assert.ok(refused instanceof Unauthorized, `${sdk}: first connect asks for authorization, got ${refused}`);
      await first.close().catch(() => {});
      const transport = new Transport(new URL(gh.mcpUrl), { authProvider: provider });
      await within(STEP_MS, transport.finishAuth(finish(provider)), `${sdk} finishAuth`);
      const client = new Client(CLIENT_INFO, { capabilities });
      open.add(client);
      await within(STEP_MS, client.connect(transport), `${sdk} connect with tokens`);
      return client;
    }

    const call = async (client, name, args = {}, options) => {
      const result = await within(STEP_MS, client.callTool({ name, arguments: args }, undefined, options), `tools/call ${name}`);
      assert.notEqual(result.isError, true, `${name}: ${JSON.stringify(result)}`);
      return toolText(result);
    };

    for (const sdk of Object.keys(SDKS)) {
      t_(`sdk ${sdk}: lists and calls tools of the HTTP upstream, the stdio upstream and the demo server`, async () => {
        const client = await connect(sdk);
        const { tools } = await within(STEP_MS, client.listTools(), 'tools/list');
        const names = new Set(tools.map((t) => t.name));
        for (const name of ['demo__echo', 'demo__whoami', 'web__test_simple_text', 'local__test_simple_text', 'local__test_tool_with_progress']) {
          assert.ok(names.has(name), `${name} is listed (got ${[...names].sort().join(', ')})`);
        }
        assert.equal(await call(client, 'web__test_simple_text'), 'This is a simple text response for testing.');
        assert.equal(await call(client, 'local__test_simple_text'), 'This is a simple text response for testing.');
        assert.equal(await call(client, 'demo__add', { a: 20, b: 22 }), '42');
        const me = JSON.parse(await call(client, 'demo__whoami'));
        assert.equal(me.workspace, 'default');

        // Resources and prompts of the upstreams are merged too (reading a resource needs
        // mcp:resources, which this grant, the default mcp:read mcp:tools, does not carry).
        const { resources } = await within(STEP_MS, client.listResources(), 'resources/list');
        assert.ok(resources.some((r) => r.uri === 'test://static-text'), 'the test server\'s resources are listed');
        assert.ok(resources.some((r) => r.uri === 'demo://readme'), 'the demo server\'s resource is listed');
        const prompt = await within(STEP_MS, client.getPrompt({ name: 'local__test_simple_prompt' }), 'prompts/get');
        assert.equal(prompt.messages[0].content.text, 'This is a simple prompt for testing.');
        await client.close();
        open.delete(client);
      });
    }

    for (const [label, prefix] of [['HTTP', 'web'], ['stdio', 'local']]) {
      t_(`sdk v1: sampling, elicitation and progress cross the gateway to the ${label} upstream and back`, async () => {
        const client = await connect('v1', { sampling: {}, elicitation: {} });
        const asked = [];
        client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
          asked.push(request.params.messages[0].content.text);
          return { role: 'assistant', model: 'e2e-model', content: { type: 'text', text: 'Paris' } };
        });
        client.setRequestHandler(ElicitRequestSchema, async (request) => {
          asked.push(request.params.message);
          return { action: 'accept', content: { response: 'yes' } };
        });
        assert.equal(await call(client, `${prefix}__test_sampling`, { prompt: 'Capital of France?' }), 'LLM response: Paris');
        assert.equal(
          await call(client, `${prefix}__test_elicitation`, { message: 'Proceed?' }),
          'User response: action=accept, content={"response":"yes"}',
        );
        assert.deepEqual(asked, ['Capital of France?', 'Proceed?'], 'the client was asked, through the gateway');

        const progress = [];
        await call(client, `${prefix}__test_tool_with_progress`, {}, { onprogress: (p) => progress.push(p.progress) });
        assert.deepEqual(progress, [0, 50, 100], 'progress reached the client under its own token');
        await client.close();
        open.delete(client);
      });
    }

    t_('stateless (2026-07-28) requests reuse upstream connections: one stdio child and one handshake per principal', async () => {
      const spawnsBefore = await spawns(spawnLog);
      const statsBefore = await upstream.stats();
      const machine = async () =>
        (await gh.cli(['token', 'create', '--workspace', 'default', '--scope', 'mcp:read mcp:tools', '--expires', '1d'])).stdout.trim();
      const [alice, bob] = [await machine(), await machine()];
      const N = 6;
      for (let i = 0; i < N; i++) {
        for (const token of [alice, bob]) {
          assert.equal(await statelessCall(gh.mcpUrl, token, 'local__test_simple_text', i), 'This is a simple text response for testing.');
          assert.equal(await statelessCall(gh.mcpUrl, token, 'web__test_simple_text', i), 'This is a simple text response for testing.');
        }
      }
      const started = (await spawns(spawnLog)) - spawnsBefore;
      assert.equal(started, 2, `one stdio child per principal for ${2 * N} stateless calls each (started ${started})`);
      const stats = await upstream.stats();
      assert.equal(stats.discovers - statsBefore.discovers, 2, 'one server/discover per principal: the HTTP connection is reused');
      assert.equal(stats.stateless - statsBefore.stateless, 2 * (N + 1), 'every call reached the HTTP upstream statelessly');
    });
  });
}

async function spawns(file) {
  try {
    return (await readFile(file, 'utf8')).split('\n').filter(Boolean).length;
  } catch (e) {
    if (e.code === 'ENOENT') return 0;
    throw e;
  }
}

/** One self-contained 2026-07-28 tools/call (no initialize, no session), answered as JSON or SSE. */
async function statelessCall(mcpUrl, token, name, id) {
  const meta = {
    'io.modelcontextprotocol/protocolVersion': STATELESS,
    'io.modelcontextprotocol/clientInfo': CLIENT_INFO,
    'io.modelcontextprotocol/clientCapabilities': {},
  };
  const res = await fetch(mcpUrl, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': STATELESS,
      'mcp-method': 'tools/call',
      'mcp-name': name,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {}, _meta: meta } }),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `stateless ${name}: HTTP ${res.status} ${text}`);
  assert.equal(res.headers.get('mcp-session-id'), null, 'no session is opened');
  const messages = res.headers.get('content-type')?.includes('text/event-stream')
    ? text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).filter(Boolean).map((l) => JSON.parse(l))
    : [JSON.parse(text)];
  const answer = messages.find((m) => m.id === id);
  assert.ok(answer?.result, `stateless ${name}: ${text}`);
  return toolText(answer.result);
}
