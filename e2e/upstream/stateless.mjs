// The MCP 2026-07-28 (stateless) side of the upstream test server: each POST carries its own
// protocol version and client context in params._meta, and there is no initialize and no
// session. @modelcontextprotocol/sdk 1.x has no stateless server, so this module checks the
// per-request metadata itself and answers the ordinary methods by asking a fresh fixture
// server (fixtures.mjs) over an in-memory link, one per request, so that concurrent requests
// never see each other's notifications. What exists only in 2026-07-28 is answered here
// (server/discover, subscriptions/listen) or in mrtr.mjs (InputRequiredResult round trips and
// diagnostics) and tasks.mjs (the tasks extension).

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import {
  LoggingMessageNotificationSchema,
  ProgressNotificationSchema,
  ResultSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { buildServer } from './fixtures.mjs';
import { listeners, STATELESS_PROMPTS, STATELESS_TOOLS } from './mrtr.mjs';
import { RpcError, TASK_TOOLS, TASKS_EXTENSION, callTaskTool, listedTaskTools, taskMethod } from './tasks.mjs';

export const STATELESS_VERSION = '2026-07-28';
const META = 'io.modelcontextprotocol/';
const LEGACY_VERSIONS = new Set(['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25']);
const REMOVED_METHODS = new Set(['initialize', 'ping', 'logging/setLevel', 'resources/subscribe', 'resources/unsubscribe']);
const CACHEABLE = new Set(['server/discover', 'tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read']);

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
    if (result instanceof RpcError) return fail(result.code === -32021 ? 400 : 200, result.code, result.message, result.data);
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
      capabilities: {
        tools: { listChanged: true },
        prompts: { listChanged: true },
        resources: {},
        completions: {},
        extensions: { [TASKS_EXTENSION]: {} },
      },
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
    if (streamed.length === 0 || result instanceof RpcError) return reply(result);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    for (const m of streamed) res.write(`event: message\ndata: ${JSON.stringify(m)}\n\n`);
    result.resultType ??= 'complete';
    return res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id, result })}\n\n`);
  }
  if (method === 'prompts/get' && STATELESS_PROMPTS[params.name]) return reply(STATELESS_PROMPTS[params.name].get(params));
  if (method === 'tools/call' && TASK_TOOLS[params.name]) return reply(await callTaskTool(params, meta));
  if (['tasks/get', 'tasks/update', 'tasks/cancel'].includes(method)) return reply(taskMethod(method, params, meta));

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
        ...listedTaskTools(),
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
  const named =
    method === 'tools/call' || method === 'prompts/get'
      ? params.name
      : method === 'resources/read'
        ? params.uri
        : ['tasks/get', 'tasks/update', 'tasks/cancel'].includes(method)
          ? params.taskId
          : undefined;
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
