// What only the stateless (2026-07-28) path of the upstream test server offers beside the
// fixtures: tools and a prompt that ask for client input inside their results (SEP-2322
// InputRequiredResult, with plain and signed requestState), diagnostics the server-stateless
// scenario drives (capability errors, streamed notifications, log levels, list changes for
// subscriptions/listen streams), and a tool whose argument travels in an Mcp-Param header
// (SEP-2243).

import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { RpcError } from './tasks.mjs';

const META = 'io.modelcontextprotocol/';
const STATE_KEY = randomBytes(32);

/** Open subscriptions/listen streams, told about list changes. */
export const listeners = new Set();

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
export const STATELESS_TOOLS = {
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
        : new RpcError(-32021, 'MissingRequiredClientCapabilityError', { requiredCapabilities: { sampling: {} } }),
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
        if (!state) return new RpcError(-32602, 'requestState integrity check failed');
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

export const STATELESS_PROMPTS = {
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
