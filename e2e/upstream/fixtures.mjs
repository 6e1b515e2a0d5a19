// The tools, resources and prompts the conformance suite's server scenarios call, on one
// McpServer of @modelcontextprotocol/sdk 1.x. Names, arguments and answers follow what the
// scenarios check (the suite's src/scenarios/server/*.ts); the implementation is ours.
//
// Used three ways by conformance-server.mjs: per session over Streamable HTTP, once over stdio,
// and per request behind the stateless (2026-07-28) HTTP path.

import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  CompleteRequestSchema,
  ElicitResultSchema,
  CreateMessageResultSchema,
  ListRootsResultSchema,
  ListToolsRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { toJsonSchemaCompat } from '@modelcontextprotocol/sdk/server/zod-json-schema-compat.js';
import { z } from 'zod';

// A 1x1 PNG and a tiny WAV, base64.
export const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
export const WAV = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';

// SEP-1613 / SEP-2106: a tool whose input schema uses JSON Schema 2020-12 keywords that a
// server (and a gateway in front of it) must hand on untouched.
const SCHEMA_2020_12 = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  $defs: {
    address: {
      $anchor: 'addressDef',
      type: 'object',
      properties: { street: { type: 'string' }, city: { type: 'string' } },
    },
  },
  properties: {
    name: { type: 'string' },
    address: { $ref: '#/$defs/address' },
    contactMethod: { type: 'string', enum: ['phone', 'email'] },
    phone: { type: 'string' },
    email: { type: 'string' },
  },
  allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
  if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
  then: { required: ['phone'] },
  else: { required: ['email'] },
  additionalProperties: false,
};

const LIST_TTL_MS = 300_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (t) => ({ content: [{ type: 'text', text: t }] });

/**
 * @param {object} [o]
 * @param {(sessionId: string|undefined, requestId: unknown) => void} [o.closeStream]  ends the SSE
 *   stream of a request (HTTP sessions only), for the reconnection tool
 * @param {(uri: string, subscribed: boolean) => void} [o.onSubscription]
 * @param {boolean} [o.cacheHints]  add SEP-2549 ttlMs/cacheScope to list and read results
 */
export function buildServer({ closeStream, onSubscription, cacheHints = false } = {}) {
  const server = new McpServer(
    { name: 'gatehouse-conformance-upstream', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
      instructions: 'Upstream test server for the MCP conformance suite.',
    },
  );

  const log = (level, data) =>
    server.server.sendLoggingMessage({ level, logger: 'conformance-upstream', data }).catch(() => {});

  // ----- tools -----
  server.registerTool('test_simple_text', { description: 'Returns simple text' }, async () =>
    text('This is a simple text response for testing.'),
  );
  server.registerTool('test_image_content', { description: 'Returns an image' }, async () => ({
    content: [{ type: 'image', data: PNG, mimeType: 'image/png' }],
  }));
  server.registerTool('test_audio_content', { description: 'Returns audio' }, async () => ({
    content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }],
  }));
  server.registerTool('test_embedded_resource', { description: 'Returns an embedded resource' }, async () => ({
    content: [
      {
        type: 'resource',
        resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
      },
    ],
  }));
  server.registerTool('test_multiple_content_types', { description: 'Returns text, image and resource' }, async () => ({
    content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: PNG, mimeType: 'image/png' },
      {
        type: 'resource',
        resource: {
          uri: 'test://mixed-content-resource',
          mimeType: 'application/json',
          text: JSON.stringify({ test: 'data', value: 123 }),
        },
      },
    ],
  }));
  server.registerTool(
    'test_tool_with_logging',
    { description: 'Logs three messages while it runs', inputSchema: {} },
    async (_args, extra) => {
      for (const step of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
        await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data: step } });
        await sleep(30);
      }
      return text('Tool with logging executed successfully');
    },
  );
  server.registerTool(
    'test_tool_with_progress',
    { description: 'Reports progress 0, 50, 100', inputSchema: {} },
    async (_args, extra) => {
      const progressToken = extra._meta?.progressToken ?? 0;
      for (const progress of [0, 50, 100]) {
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
        });
        await sleep(30);
      }
      return text(String(progressToken));
    },
  );
  server.registerTool('test_error_handling', { description: 'Always fails' }, async () => {
    throw new Error('This tool intentionally returns an error for testing');
  });
  server.registerTool(
    'test_reconnection',
    { description: 'Closes its SSE stream mid-call; the result arrives after the client reconnects', inputSchema: {} },
    async (_args, extra) => {
      closeStream?.(extra.sessionId, extra.requestId);
      await sleep(100);
      return text('Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.');
    },
  );
  server.registerTool(
    'test_sampling',
    { description: 'Asks the client for an LLM completion', inputSchema: { prompt: z.string() } },
    async ({ prompt }, extra) => {
      try {
        const result = await extra.sendRequest(
          {
            method: 'sampling/createMessage',
            params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 },
          },
          CreateMessageResultSchema,
        );
        return text(`LLM response: ${result.content?.text ?? 'No response'}`);
      } catch (e) {
        return text(`Sampling not supported or error: ${e.message}`);
      }
    },
  );
  const elicitTool = (name, description, inputSchema, params, prefix) =>
    server.registerTool(name, { description, inputSchema }, async (args, extra) => {
      try {
        const result = await extra.sendRequest(
          { method: 'elicitation/create', params: typeof params === 'function' ? params(args) : params },
          ElicitResultSchema,
        );
        return text(`${prefix}: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`);
      } catch (e) {
        return text(`Elicitation not supported or error: ${e.message}`);
      }
    });
  elicitTool(
    'test_elicitation',
    'Asks the user for input',
    { message: z.string() },
    ({ message }) => ({
      message,
      requestedSchema: {
        type: 'object',
        properties: { response: { type: 'string', description: "User's response" } },
        required: ['response'],
      },
    }),
    'User response',
  );
  elicitTool(
    'test_elicitation_sep1034_defaults',
    'Elicitation whose fields carry defaults (SEP-1034)',
    {},
    {
      message: 'Please review and update the form fields with defaults',
      requestedSchema: {
        type: 'object',
        properties: {
          name: { type: 'string', description: 'User name', default: 'John Doe' },
          age: { type: 'integer', description: 'User age', default: 30 },
          score: { type: 'number', description: 'User score', default: 95.5 },
          status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
          verified: { type: 'boolean', description: 'Verification status', default: true },
        },
        required: [],
      },
    },
    'Elicitation completed',
  );
  const choices = (values, titles) => values.map((v, i) => ({ const: v, title: titles[i] }));
  elicitTool(
    'test_elicitation_sep1330_enums',
    'Elicitation with every enum form (SEP-1330)',
    {},
    {
      message: 'Please select options from the enum fields',
      requestedSchema: {
        type: 'object',
        properties: {
          untitledSingle: { type: 'string', description: 'Select one option', enum: ['option1', 'option2', 'option3'] },
          titledSingle: {
            type: 'string',
            description: 'Select one option with titles',
            oneOf: choices(['value1', 'value2', 'value3'], ['First Option', 'Second Option', 'Third Option']),
          },
          legacyEnum: {
            type: 'string',
            description: 'Select one option (legacy)',
            enum: ['opt1', 'opt2', 'opt3'],
            enumNames: ['Option One', 'Option Two', 'Option Three'],
          },
          untitledMulti: {
            type: 'array',
            description: 'Select multiple options',
            minItems: 1,
            maxItems: 3,
            items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
          },
          titledMulti: {
            type: 'array',
            description: 'Select multiple options with titles',
            minItems: 1,
            maxItems: 3,
            items: { anyOf: choices(['value1', 'value2', 'value3'], ['First Choice', 'Second Choice', 'Third Choice']) },
          },
        },
        required: [],
      },
    },
    'Elicitation completed',
  );
  server.registerTool(
    'json_schema_2020_12_tool',
    {
      description: 'Tool with JSON Schema 2020-12 features (SEP-1613)',
      inputSchema: { name: z.string().optional(), address: z.object({ street: z.string().optional(), city: z.string().optional() }).optional() },
    },
    async (args) => text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`),
  );
  server.registerTool('test_list_roots', { description: 'Asks the client for its roots', inputSchema: {} }, async (_a, extra) => {
    const result = await extra.sendRequest({ method: 'roots/list' }, ListRootsResultSchema);
    return text(`Found ${result.roots.length} root(s)`);
  });

  // ----- resources -----
  const withHints = (read, scope = 'private') =>
    cacheHints ? async (...a) => ({ ...(await read(...a)), ttlMs: LIST_TTL_MS, cacheScope: scope }) : read;
  server.registerResource(
    'static-text',
    'test://static-text',
    { title: 'Static Text Resource', description: 'A static text resource', mimeType: 'text/plain' },
    withHints(async () => ({
      contents: [{ uri: 'test://static-text', mimeType: 'text/plain', text: 'This is the content of the static text resource.' }],
    })),
  );
  server.registerResource(
    'static-binary',
    'test://static-binary',
    { title: 'Static Binary Resource', description: 'A PNG image', mimeType: 'image/png' },
    withHints(async () => ({ contents: [{ uri: 'test://static-binary', mimeType: 'image/png', blob: PNG }] })),
  );
  server.registerResource(
    'template',
    new ResourceTemplate('test://template/{id}/data', { list: undefined, complete: { id: completeFrom(['1', '2', '42']) } }),
    { title: 'Resource Template', description: 'Data for an id', mimeType: 'application/json' },
    withHints(async (uri, { id }) => ({
      contents: [
        { uri: uri.toString(), mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) },
      ],
    })),
  );
  server.registerResource(
    'watched-resource',
    'test://watched-resource',
    { title: 'Watched Resource', description: 'A resource one can subscribe to', mimeType: 'text/plain' },
    withHints(async () => ({ contents: [{ uri: 'test://watched-resource', mimeType: 'text/plain', text: 'Watched resource content' }] })),
  );
  server.server.setRequestHandler(SubscribeRequestSchema, async ({ params }) => {
    onSubscription?.(params.uri, true);
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, async ({ params }) => {
    onSubscription?.(params.uri, false);
    return {};
  });

  // ----- prompts -----
  server.registerPrompt('test_simple_prompt', { title: 'Simple Test Prompt', description: 'No arguments' }, async () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  }));
  server.registerPrompt(
    'test_prompt_with_arguments',
    {
      title: 'Prompt With Arguments',
      description: 'Two required arguments',
      argsSchema: { arg1: z.string().describe('First test argument'), arg2: z.string().describe('Second test argument') },
    },
    async ({ arg1, arg2 }) => ({
      messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }],
    }),
  );
  server.registerPrompt(
    'test_prompt_with_embedded_resource',
    { title: 'Prompt With Embedded Resource', description: 'Embeds a resource', argsSchema: { resourceUri: z.string() } },
    async ({ resourceUri }) => ({
      messages: [
        { role: 'user', content: { type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } },
        { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
      ],
    }),
  );
  server.registerPrompt('test_prompt_with_image', { title: 'Prompt With Image', description: 'Contains an image' }, async () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  }));

  // ----- logging and completion -----
  server.server.setRequestHandler(SetLevelRequestSchema, async ({ params }) => {
    log('info', `Log level set to: ${params.level}`);
    return {};
  });
  server.server.setRequestHandler(CompleteRequestSchema, async ({ params }) => {
    const value = params.argument?.value ?? '';
    const pool = params.ref?.type === 'ref/prompt' ? ['alpha', 'beta', 'gamma'] : ['1', '2', '42'];
    const values = pool.filter((v) => v.startsWith(value));
    return { completion: { values, total: values.length, hasMore: false } };
  });

  // tools/list: the SDK's own conversion for every tool but the 2020-12 one, whose schema is
  // handed out verbatim (registerTool would reduce it to what zod can say).
  server.server.setRequestHandler(ListToolsRequestSchema, async () => {
    const registered = server._registeredTools;
    const tools = Object.entries(registered)
      .filter(([, t]) => t.enabled)
      .map(([name, t]) => ({
        name,
        title: t.title,
        description: t.description,
        inputSchema:
          name === 'json_schema_2020_12_tool'
            ? SCHEMA_2020_12
            : t.inputSchema
              ? toJsonSchemaCompat(t.inputSchema, { strictUnions: true, pipeStrategy: 'input' })
              : { type: 'object', properties: {} },
        annotations: t.annotations,
      }));
    return cacheHints ? { tools, ttlMs: LIST_TTL_MS, cacheScope: 'public' } : { tools };
  });

  return server;
}

function completeFrom(values) {
  return (value) => values.filter((v) => v.startsWith(value ?? ''));
}
