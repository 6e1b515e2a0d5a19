// The MCP 2026-07-28 (stateless) side of the upstream test server: each POST carries its own
// protocol version and client context in params._meta, and there is no initialize and no
// session. @modelcontextprotocol/sdk 1.x has no stateless server, so this module checks the
// per-request metadata itself and answers the ordinary methods by asking a fresh fixture
// server (fixtures.mjs) over an in-memory link, one per request, so that concurrent requests
// never see each other's notifications. What exists only in 2026-07-28 (server/discover,
// subscriptions/listen, InputRequiredResult round trips) is answered here.

import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import {
  LoggingMessageNotificationSchema,
  ProgressNotificationSchema,
  ResultSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { buildServer } from './fixtures.mjs';

export const STATELESS_VERSION = '2026-07-28';
const META = 'io.modelcontextprotocol/';
const LEGACY_VERSIONS = new Set(['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25']);
const REMOVED_METHODS = new Set(['initialize', 'ping', 'logging/setLevel', 'resources/subscribe', 'resources/unsubscribe']);
const CACHEABLE = new Set(['server/discover', 'tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read']);
const STATE_KEY = randomBytes(32);

/** True when a sessionless POST speaks the stateless protocol (rather than starting a session). */
export function isStatelessRequest(req) {
  if (req.headers['mcp-session-id']) return false;
  const meta = req.body?.params?._meta;
  const header = req.headers['mcp-protocol-version'];
  // A legacy handshake names its version in params; a stateless request only in _meta.
  if (req.body?.method === 'initialize' && req.body?.params?.protocolVersion !== undefined) return false;
  if (meta === undefined && header !== undefined && LEGACY_VERSIONS.has(header)) return false;
  return header !== undefined || meta !== undefined;
}

/** Open subscriptions/listen streams, told about list changes. */
const listeners = new Set();

function notifyListeners(kind) {
  const method = `notifications/${kind}/list_changed`;
  for (const l of listeners) {
    if (!l.wants[kind]) continue;
    l.res.write(`${JSON.stringify({ jsonrpc: '2.0', method, params: { _meta: { [`${META}subscriptionId`]: l.id } } })}\n`);
  }
}

const sign = (payload) => {
  const data = JSON.stringify(payload);
  return JSON.stringify({ data, mac: createHmac('sha256', STATE_KEY).update(data).digest('hex') });
};
const verify = (raw) => {
  try {
    const { data, mac } = JSON.parse(raw);
    return mac === createHmac('sha256', STATE_KEY).update(data).digest('hex') ? JSON.parse(data) : null;
  } catch {
    return null;
  }
};
const unsignedState = (raw) => {
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
};

const elicit = (message, properties, required) => ({
  method: 'elicitation/create',
  params: { message, requestedSchema: { type: 'object', properties, required } },
});
const sample = (prompt, maxTokens = 100) => ({
  method: 'sampling/createMessage',
  params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens },
});
const roots = { method: 'roots/list', params: {} };
const inputRequired = (inputRequests, requestState) => ({
  resultType: 'input_required',
  inputRequests,
  ...(requestState !== undefined ? { requestState } : {}),
});
const done = (t) => ({ content: [{ type: 'text', text: t }] });
/** An elicitation answer's field, if the answer is well formed (an accepted object). */
const field = (response, name) =>
  response && typeof response === 'object' && response.action === 'accept' && typeof response.content?.[name] !== 'undefined'
    ? response.content[name]
    : undefined;

// Tools that exist only on the stateless path: multi-round-trip requests (SEP-2322) and
// diagnostics the server-stateless scenario drives.
const STATELESS_TOOLS = {
  test_header_param: {
    description: 'Echoes its region, which clients also send as the Mcp-Param-Region header (SEP-2243)',
    inputSchema: { type: 'object', properties: { region: { type: 'string', 'x-mcp-header': 'Region' } }, required: ['region'] },
    call: ({ arguments: a }) => done(`region: ${a?.region}`),
  },
  test_missing_capability: {
    description: 'Needs the sampling capability',
    call: (_p, meta) =>
      meta[`${META}clientCapabilities`]?.sampling
        ? done('Success')
        : { error: { code: -32021, message: 'MissingRequiredClientCapabilityError', data: { requiredCapabilities: { sampling: {} } } } },
  },
  test_input_required_result_elicitation: {
    description: 'Asks for a name, then greets',
    call: ({ inputResponses: r }) => {
      const name = field(r?.user_name, 'name');
      return name !== undefined ? done(`Hello, ${name}!`) : inputRequired({ user_name: elicit('What is your name?', { name: { type: 'string' } }, ['name']) });
    },
  },
  test_input_required_result_sampling: {
    description: 'Asks for a completion',
    call: ({ inputResponses: r }) => {
      const answer = r?.sample_request;
      return answer && typeof answer === 'object'
        ? done(`Sampling result: ${answer.content?.text ?? 'no response'}`)
        : inputRequired({ sample_request: sample('What is the capital of France?') });
    },
  },
  test_input_required_result_list_roots: {
    description: 'Asks for the roots',
    call: ({ inputResponses: r }) =>
      Array.isArray(r?.roots_request?.roots) ? done(`Found ${r.roots_request.roots.length} root(s)`) : inputRequired({ roots_request: roots }),
  },
  test_input_required_result_request_state: {
    description: 'Round trip with requestState',
    call: ({ inputResponses: r, requestState }) => {
      const state = requestState ? unsignedState(requestState) : null;
      if (state?.kind === 'request-state' && field(r?.confirm, 'ok') === true) return done('state-ok: requestState validated');
      return inputRequired(
        { confirm: elicit('Please confirm', { ok: { type: 'boolean' } }, ['ok']) },
        JSON.stringify({ kind: 'request-state', nonce: randomUUID() }),
      );
    },
  },
  test_input_required_result_multiple_inputs: {
    description: 'Three inputs at once',
    call: ({ inputResponses: r, requestState }) => {
      const state = requestState ? unsignedState(requestState) : null;
      if (state?.kind === 'multiple-inputs' && r?.user_name && r?.greeting && r?.client_roots) {
        const name = field(r.user_name, 'name') ?? 'unknown';
        const greeting = r.greeting.content?.text ?? 'Hello there!';
        const count = Array.isArray(r.client_roots.roots) ? r.client_roots.roots.length : 0;
        return done(`Name: ${name}; Greeting: ${greeting}; Roots: ${count}`);
      }
      return inputRequired(
        {
          user_name: elicit('What is your name?', { name: { type: 'string' } }, ['name']),
          greeting: sample('Generate a greeting', 50),
          client_roots: roots,
        },
        JSON.stringify({ kind: 'multiple-inputs', nonce: randomUUID() }),
      );
    },
  },
  test_input_required_result_multi_round: {
    description: 'Two rounds of questions',
    call: ({ inputResponses: r, requestState }) => {
      const state = requestState ? unsignedState(requestState) : null;
      if (state?.round === 1 && field(r?.step1, 'name') !== undefined) {
        return inputRequired(
          { step2: elicit('Step 2: What is your favorite color?', { color: { type: 'string' } }, ['color']) },
          JSON.stringify({ round: 2, name: field(r.step1, 'name'), nonce: randomUUID() }),
        );
      }
      if (state?.round === 2 && field(r?.step2, 'color') !== undefined) {
        return done(`Multi-round complete for ${state.name} who likes ${field(r.step2, 'color')}`);
      }
      return inputRequired(
        { step1: elicit('Step 1: What is your name?', { name: { type: 'string' } }, ['name']) },
        JSON.stringify({ round: 1, nonce: randomUUID() }),
      );
    },
  },
  test_input_required_result_tampered_state: {
    description: 'Signed requestState',
    call: ({ inputResponses: r, requestState }) => {
      if (requestState) {
        const state = verify(requestState);
        if (!state) return { error: { code: -32602, message: 'requestState integrity check failed' } };
        if (state.kind === 'tamper-test' && r?.confirm) return done('integrity-ok: state verified');
      }
      return inputRequired(
        { confirm: elicit('Please confirm', { ok: { type: 'boolean' } }, ['ok']) },
        sign({ kind: 'tamper-test', nonce: randomUUID() }),
      );
    },
  },
  test_input_required_result_capabilities: {
    description: 'Asks only for what the client can do',
    call: ({ inputResponses: r }, meta) => {
      const caps = meta[`${META}clientCapabilities`] ?? {};
      if (r && Object.keys(r).length > 0) return done(`capabilities-ok: received ${Object.keys(r).join(',')}`);
      const asks = {};
      if (caps.elicitation) asks.elicit_input = elicit('Elicitation input', { value: { type: 'string' } }, ['value']);
      if (caps.sampling) asks.sample_input = sample('Sample request', 50);
      if (Object.keys(asks).length === 0) return done('No supported capabilities declared');
      return inputRequired(asks, sign({ kind: 'capabilities-test', nonce: randomUUID() }));
    },
  },
  test_streaming_elicitation: {
    description: 'Streams a progress notification before its result',
    stream: () => [{ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'stream', progress: 50, total: 100 } }],
    call: () => done('Streaming complete'),
  },
  test_logging_tool: {
    description: 'Logs only when the request asked for a log level',
    stream: (meta) =>
      meta[`${META}logLevel`]
        ? [{ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'Diagnostic trace logging activated' } }]
        : [],
    call: () => done('Logging evaluated'),
  },
  test_trigger_tool_change: {
    description: 'Announces a tool list change to listeners',
    call: () => (notifyListeners('tools'), done('Mutation triggered')),
  },
  test_trigger_prompt_change: {
    description: 'Announces a prompt list change to listeners',
    call: () => (notifyListeners('prompts'), done('Mutation triggered')),
  },
};

const STATELESS_PROMPTS = {
  test_input_required_result_prompt: {
    description: 'Asks for context before it can be rendered',
    get: ({ inputResponses: r }) => {
      const context = field(r?.user_context, 'context');
      return context !== undefined
        ? { messages: [{ role: 'user', content: { type: 'text', text: `Prompt with context: ${context}` } }] }
        : inputRequired({ user_context: elicit('What context should the prompt use?', { context: { type: 'string' } }, ['context']) });
    },
  },
};

/** Answers one stateless POST (express req/res, body already parsed). */
export async function handleStateless(req, res) {
  const body = req.body;
  if (Array.isArray(body) || typeof body !== 'object' || body === null) {
    return res.status(400).json({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Invalid Request' } });
  }
  const { id = null, method, params = {} } = body;
  if (id === null || id === undefined) return res.status(202).end(); // a notification: nothing to answer
  const fail = (status, code, message, data) =>
    res.status(status).json({ jsonrpc: '2.0', id, error: { code, message, ...(data !== undefined ? { data } : {}) } });

  const header = req.headers['mcp-protocol-version'];
  const meta = params._meta;
  if (!header) return fail(400, -32020, 'Missing MCP-Protocol-Version header');
  if (!meta || !meta[`${META}protocolVersion`] || !meta[`${META}clientCapabilities`]) {
    return fail(400, -32602, 'Invalid params: _meta must carry protocolVersion and clientCapabilities');
  }
  const version = meta[`${META}protocolVersion`];
  if (header !== version) return fail(400, -32020, 'MCP-Protocol-Version header does not match _meta');
  if (version !== STATELESS_VERSION) {
    return fail(400, -32022, 'Unsupported protocol version', { supported: [STATELESS_VERSION], requested: String(version) });
  }

  const mismatch = standardHeaderMismatch(req.headers, method, params);
  if (mismatch) return fail(400, -32020, `Header mismatch: ${mismatch}`);

  const reply = (result) => {
    if (result.error) return fail(result.error.code === -32021 ? 400 : 200, result.error.code, result.error.message, result.error.data);
    result.resultType ??= 'complete';
    if (CACHEABLE.has(method)) {
      result.ttlMs ??= 0;
      result.cacheScope ??= 'private';
    }
    return res.json({ jsonrpc: '2.0', id, result });
  };

  if (method === 'server/discover') {
    return reply({
      supportedVersions: [STATELESS_VERSION],
      capabilities: { tools: { listChanged: true }, prompts: { listChanged: true }, resources: {}, completions: {} },
      instructions: 'Upstream test server for the MCP conformance suite.',
      _meta: { [`${META}serverInfo`]: { name: 'gatehouse-conformance-upstream', version: '1.0.0' } },
      ttlMs: 300_000,
      cacheScope: 'public',
    });
  }
  if (method === 'subscriptions/listen') return listen(req, res, id, params);
  if (REMOVED_METHODS.has(method)) return fail(404, -32601, `Method not found: ${method} does not exist in ${STATELESS_VERSION}`);

  if (method === 'tools/call' && STATELESS_TOOLS[params.name]) {
    const tool = STATELESS_TOOLS[params.name];
    const streamed = tool.stream?.(meta) ?? [];
    const result = tool.call(params, meta);
    if (streamed.length === 0 || result.error) return reply(result);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    for (const m of streamed) res.write(`event: message\ndata: ${JSON.stringify(m)}\n\n`);
    result.resultType ??= 'complete';
    return res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id, result })}\n\n`);
  }
  if (method === 'prompts/get' && STATELESS_PROMPTS[params.name]) return reply(STATELESS_PROMPTS[params.name].get(params));

  const forwardable = ['tools/list', 'tools/call', 'prompts/list', 'prompts/get', 'resources/list', 'resources/read', 'resources/templates/list', 'completion/complete'];
  if (!forwardable.includes(method)) return fail(404, -32601, `Method not found: ${method}`);
  return dispatch(req, res, { id, method, params, meta, reply, fail });
}

/** Asks a fresh fixture server; tools/call answers as an SSE stream carrying its notifications. */
async function dispatch(_req, res, { id, method, params, meta, reply, fail }) {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const server = buildServer({ cacheHints: true });
  await server.connect(serverSide);
  const client = new Client({ name: 'stateless-dispatch', version: '1.0.0' }, { capabilities: {} });
  const notes = [];
  const logLevel = meta[`${META}logLevel`];
  const keep = (n) => notes.push({ jsonrpc: '2.0', method: n.method, params: n.params });
  client.setNotificationHandler(ProgressNotificationSchema, keep);
  // 2026-07-28: a server logs only for requests that asked for a level.
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logLevel && keep(n));
  await client.connect(clientSide);
  try {
    const { _meta, ...rest } = params;
    const progressToken = _meta?.progressToken;
    const forwarded = progressToken !== undefined ? { ...rest, _meta: { progressToken } } : rest;
    let outcome;
    try {
      outcome = { result: await client.request({ method, params: forwarded }, ResultSchema) };
    } catch (e) {
      const data = e.data ?? (method === 'resources/read' ? { uri: params.uri } : undefined);
      outcome = { error: { code: e.code ?? -32603, message: e.message, data } };
    }
    if (method === 'tools/call') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (const n of notes) res.write(`event: message\ndata: ${JSON.stringify(n)}\n\n`);
      if (outcome.result) outcome.result.resultType ??= 'complete';
      return res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id, ...outcome })}\n\n`);
    }
    if (outcome.error) return fail(200, outcome.error.code, outcome.error.message, outcome.error.data);
    const result = outcome.result;
    if (method === 'tools/list') {
      result.tools.push(
        ...Object.entries(STATELESS_TOOLS).map(([name, t]) => ({
          name,
          description: t.description,
          inputSchema: t.inputSchema ?? { type: 'object', properties: {} },
        })),
      );
    }
    if (method === 'prompts/list') {
      result.prompts.push(...Object.entries(STATELESS_PROMPTS).map(([name, p]) => ({ name, description: p.description })));
    }
    return reply(result);
  } finally {
    await client.close().catch(() => {});
    await server.close().catch(() => {});
  }
}

/** subscriptions/listen: acknowledge, then hold the stream open for list-changed notifications. */
function listen(_req, res, id, params) {
  const asked = params.notifications ?? {};
  const wants = { tools: asked.toolsListChanged === true, prompts: asked.promptsListChanged === true };
  const subscription = String(id);
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache' });
  const granted = { ...(wants.tools ? { toolsListChanged: true } : {}), ...(wants.prompts ? { promptsListChanged: true } : {}) };
  res.write(
    `${JSON.stringify({
      jsonrpc: '2.0',
      method: 'notifications/subscriptions/acknowledged',
      params: { _meta: { [`${META}subscriptionId`]: subscription }, notifications: granted },
    })}\n`,
  );
  const entry = { res, id: subscription, wants };
  listeners.add(entry);
  res.on('close', () => listeners.delete(entry));
}

// SEP-2243: Mcp-Method (always) and Mcp-Name (for requests that name a tool, prompt or
// resource) repeat the body so that intermediaries can route without parsing it; a server
// must refuse a request whose headers disagree with its body. Values are compared exactly
// (case matters) after trimming optional whitespace, as HTTP field parsing requires.
function standardHeaderMismatch(headers, method, params) {
  const header = (name) => (typeof headers[name] === 'string' ? headers[name].trim() : undefined);
  const sentMethod = header('mcp-method');
  if (sentMethod !== method) return `Mcp-Method ${JSON.stringify(sentMethod ?? null)} is not the body's method ${method}`;
  const named = method === 'tools/call' || method === 'prompts/get' ? params.name : method === 'resources/read' ? params.uri : undefined;
  if (named !== undefined && header('mcp-name') !== named) {
    return `Mcp-Name ${JSON.stringify(header('mcp-name') ?? null)} is not the body's ${JSON.stringify(named)}`;
  }
  if (method === 'tools/call') {
    const schema = STATELESS_TOOLS[params.name]?.inputSchema;
    for (const [arg, def] of Object.entries(schema?.properties ?? {})) {
      const suffix = def['x-mcp-header'];
      const value = params.arguments?.[arg];
      if (suffix === undefined || value === undefined) continue;
      const raw = header(`mcp-param-${suffix.toLowerCase()}`);
      if (raw === undefined) return `Mcp-Param-${suffix} is missing`;
      const decoded = decodeParam(raw);
      if (decoded === null) return `Mcp-Param-${suffix} is not valid Base64`;
      if (decoded !== String(value)) return `Mcp-Param-${suffix} does not match argument ${arg}`;
    }
  }
  return null;
}

/** `=?base64?...?=` values are Base64 (strictly checked); anything else is literal. */
function decodeParam(raw) {
  const m = /^=\?base64\?(.*)\?=$/.exec(raw);
  if (!m) return raw;
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(m[1])) return null;
  return Buffer.from(m[1], 'base64').toString('utf8');
}
