// The tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`) on the stateless path of the
// upstream test server: task-supporting tools answer with a CreateTaskResult when the request's
// client declares the extension, run in the background, and are observed and steered with
// tasks/get, tasks/update (answers to input requests) and tasks/cancel.

import { randomUUID } from 'node:crypto';

export const TASKS_EXTENSION = 'io.modelcontextprotocol/tasks';
const CAPS = 'io.modelcontextprotocol/clientCapabilities';
const TTL_MS = 5 * 60_000;
const POLL_MS = 250;
const MAX_TASKS = 1_000;
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/** taskId -> task; the oldest are dropped beyond MAX_TASKS, expired ones on access. */
const tasks = new Map();

const now = () => new Date().toISOString();
const text = (t, isError = false) => ({ content: [{ type: 'text', text: t }], ...(isError ? { isError: true } : {}) });
const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });
const elicit = (message, name) => ({
  method: 'elicitation/create',
  params: { message, requestedSchema: { type: 'object', properties: { [name]: { type: 'string' } }, required: [name] } },
});

export const declaresTasks = (meta) => Boolean(meta?.[CAPS]?.extensions?.[TASKS_EXTENSION]);
/** A JSON-RPC error answer (as opposed to a result, which may itself carry an `error` field). */
export class RpcError {
  constructor(code, message, data) {
    Object.assign(this, { code, message, data });
  }
}

const missingTasks = () =>
  new RpcError(-32021, `this needs the ${TASKS_EXTENSION} extension`, {
    requiredCapabilities: { extensions: { [TASKS_EXTENSION]: {} } },
  });

/**
 * A running task: `work(task)` does the job; it may call task.ask(requests) to wait for input.
 * Its outcome is a tool result (completed, even when the tool reports an error), or a thrown
 * error (failed: a protocol-level error).
 */
function startTask(work) {
  for (const [id, t] of tasks) if (tasks.size >= MAX_TASKS) tasks.delete(id); else break;
  const controller = new AbortController();
  const task = {
    taskId: randomUUID(),
    status: 'working',
    createdAt: now(),
    lastUpdatedAt: now(),
    expiresAt: Date.now() + TTL_MS,
    inputRequests: null,
    answers: {},
    waiting: null,
    result: undefined,
    error: undefined,
    signal: controller.signal,
    cancel: () => controller.abort(),
    set(status) {
      if (TERMINAL.has(this.status)) return;
      this.status = status;
      this.lastUpdatedAt = now();
    },
    /** Parks the task until every request in `requests` is answered; returns the answers. */
    ask(requests) {
      this.inputRequests = { ...requests };
      this.answers = {};
      this.set('input_required');
      return new Promise((resolve) => (this.waiting = resolve));
    },
    answer(responses) {
      if (this.status !== 'input_required' || !this.inputRequests) return;
      for (const [key, value] of Object.entries(responses ?? {})) {
        if (!(key in this.inputRequests)) continue; // unknown keys are ignored
        this.answers[key] = value;
        delete this.inputRequests[key];
      }
      if (Object.keys(this.inputRequests).length === 0) {
        this.inputRequests = null;
        this.set('working');
        const resolve = this.waiting;
        this.waiting = null;
        resolve?.(this.answers);
      }
    },
  };
  tasks.set(task.taskId, task);
  controller.signal.addEventListener('abort', () => {
    task.set('cancelled');
    task.inputRequests = null;
  });
  Promise.resolve()
    .then(() => work(task))
    .then(
      (result) => {
        if (task.status === 'cancelled') return;
        task.result = result;
        task.set('completed');
      },
      (e) => {
        if (task.status === 'cancelled') return;
        task.error = { code: e.code ?? -32603, message: e.message ?? String(e) };
        task.set('failed');
      },
    );
  return task;
}

const envelope = (task) => ({
  taskId: task.taskId,
  status: task.status,
  createdAt: task.createdAt,
  lastUpdatedAt: task.lastUpdatedAt,
  ttlMs: TTL_MS,
  pollIntervalMs: POLL_MS,
});

const created = (task) => ({ resultType: 'task', ...envelope(task) });

/** The task-supporting tools; `support` is what tools/list declares. */
export const TASK_TOOLS = {
  greet: {
    description: 'Greets, at once (never a task)',
    inputSchema: { type: 'object', properties: { name: { type: 'string' } } },
    call: ({ arguments: a }) => text(`Hello, ${a?.name ?? 'world'}!`),
  },
  slow_compute: {
    description: 'Sleeps `seconds`, then answers; a task when the client supports tasks',
    support: 'optional',
    inputSchema: { type: 'object', properties: { seconds: { type: 'number' }, label: { type: 'string' } } },
    work: async ({ arguments: a }, task) => {
      await sleep(Math.max(0, Number(a?.seconds ?? 1)) * 1000, task?.signal);
      return text(`Computed ${a?.label ?? 'result'} after ${a?.seconds ?? 1}s`);
    },
  },
  failing_job: {
    description: 'Runs as a task and reports a tool error',
    support: 'required',
    inputSchema: { type: 'object', properties: {} },
    work: async (_p, task) => {
      await sleep(300, task.signal);
      return text('The job failed: the widget is broken', true);
    },
  },
  protocol_error_job: {
    description: 'Runs as a task and fails at the protocol level',
    support: 'required',
    inputSchema: { type: 'object', properties: {} },
    work: async (_p, task) => {
      await sleep(100, task.signal);
      throw Object.assign(new Error('internal failure while running the job'), { code: -32603 });
    },
  },
  confirm_delete: {
    description: 'Asks for confirmation, then deletes',
    support: 'required',
    inputSchema: { type: 'object', properties: { filename: { type: 'string' } } },
    work: async ({ arguments: a }, task) => {
      const { confirm } = await task.ask({ confirm: elicit(`Delete ${a?.filename ?? 'the file'}?`, 'confirm') });
      const yes = confirm?.action === 'accept';
      return text(yes ? `Deleted ${a?.filename ?? 'the file'}` : 'Deletion cancelled');
    },
  },
  multi_input: {
    description: 'Asks two questions at once',
    support: 'required',
    inputSchema: { type: 'object', properties: {} },
    work: async (_p, task) => {
      const answers = await task.ask({ first: elicit('First value?', 'value'), second: elicit('Second value?', 'value') });
      return text(`Got ${answers.first?.content?.value ?? '?'} and ${answers.second?.content?.value ?? '?'}`);
    },
  },
  test_tool_with_task: {
    description: 'Asks for a name (input request), then works on it as a task',
    support: 'required',
    inputSchema: { type: 'object', properties: {} },
    // Round 1 happens before the task exists: an InputRequiredResult.
    before: ({ inputResponses: r }) => {
      const name = r?.user_name?.action === 'accept' ? r.user_name.content?.name : undefined;
      return name === undefined
        ? { resultType: 'input_required', inputRequests: { user_name: elicit('What is your name?', 'name') } }
        : null;
    },
    work: async ({ inputResponses: r }, task) => {
      await sleep(100, task.signal);
      return text(`Task finished for ${r.user_name.content.name}`);
    },
  },
};

/** The tools/list entries, with the task support each declares. */
export function listedTaskTools() {
  return Object.entries(TASK_TOOLS).map(([name, t]) => ({
    name,
    description: t.description,
    inputSchema: t.inputSchema,
    ...(t.support ? { execution: { taskSupport: t.support } } : {}),
  }));
}

/** tools/call of a task tool: a result, an input request, a CreateTaskResult or an error. */
export async function callTaskTool(params, meta) {
  const tool = TASK_TOOLS[params.name];
  if (tool.call) return tool.call(params);
  const early = tool.before?.(params);
  if (early) return early;
  if (!declaresTasks(meta)) {
    // Without the extension, a tool that may run either way runs now; one that must be a
    // task cannot run at all.
    if (tool.support === 'required') return missingTasks();
    return tool.work(params, null);
  }
  return created(startTask((task) => tool.work(params, task)));
}

function find(params) {
  const task = tasks.get(params?.taskId);
  if (task && Date.now() > task.expiresAt && TERMINAL.has(task.status)) tasks.delete(task.taskId);
  return tasks.get(params?.taskId);
}

/** tasks/get, tasks/update and tasks/cancel. */
export function taskMethod(method, params, meta) {
  if (!declaresTasks(meta)) return missingTasks();
  const task = find(params);
  if (!task) return new RpcError(-32602, `unknown task ${params?.taskId}`);
  if (method === 'tasks/get') {
    return {
      resultType: 'complete',
      ...envelope(task),
      ...(task.status === 'input_required' && task.inputRequests ? { inputRequests: task.inputRequests } : {}),
      ...(task.status === 'completed' ? { result: { ...task.result, resultType: 'complete' } } : {}),
      ...(task.status === 'failed' ? { error: task.error } : {}),
    };
  }
  if (method === 'tasks/update') task.answer(params.inputResponses);
  if (method === 'tasks/cancel' && !TERMINAL.has(task.status)) task.cancel();
  return { resultType: 'complete' };
}
