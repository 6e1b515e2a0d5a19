#!/usr/bin/env node
// Upstream MCP server for the e2e tests: implements what the official conformance suite's
// server scenarios call (fixtures.mjs), so that the suite can run once directly against it
// and once through the gateway.
//
//   node conformance-server.mjs [--port N]           Streamable HTTP on 127.0.0.1 (port 0: any);
//                                                     prints "listening <url>" when ready
//   node conformance-server.mjs --stdio [--spawn-log FILE]
//                                                     MCP over stdin/stdout; appends one line to
//                                                     FILE per start (to count spawns)
//
// Over HTTP it serves the session-based revisions (2025-06-18, 2025-11-25: initialize, then
// Mcp-Session-Id, GET streams with resumption, DELETE) and the stateless 2026-07-28 revision
// (stateless.mjs) on the same URL. GET /stats answers how many sessions and stateless requests
// it has seen, so tests can tell whether a gateway reuses its upstream connections.

import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { buildServer } from './fixtures.mjs';
import { handleStateless, isStatelessRequest } from './stateless.mjs';

const { values: opts } = parseArgs({
  options: {
    stdio: { type: 'boolean', default: false },
    port: { type: 'string', default: '0' },
    'spawn-log': { type: 'string' },
  },
});

if (opts.stdio) {
  if (opts['spawn-log']) appendFileSync(opts['spawn-log'], `${process.pid}\n`);
  const server = buildServer();
  await server.connect(new StdioServerTransport());
  // stdout carries the protocol; anything for people goes to stderr.
  console.error('conformance upstream: serving MCP over stdio');
} else {
  await serveHttp(Number(opts.port));
}

async function serveHttp(port) {
  const stats = { sessions: 0, initializes: 0, stateless: 0, discovers: 0 };
  /** session id -> { transport, server } */
  const sessions = new Map();
  /** Events per stream for resumption (SEP-1699); bounded per session by the test's size. */
  const events = new Map(); // event id -> { stream, message }
  const eventStore = {
    async storeEvent(stream, message) {
      const id = `${stream}|${String(events.size).padStart(8, '0')}`;
      events.set(id, { stream, message });
      return id;
    },
    async replayEventsAfter(lastEventId, { send }) {
      const stream = lastEventId.split('|')[0];
      for (const [id, e] of events) {
        if (e.stream === stream && id > lastEventId && Object.keys(e.message).length > 0) await send(id, e.message);
      }
      return stream;
    },
  };

  // Host header check against DNS rebinding (loopback names only), then JSON bodies.
  const app = createMcpExpressApp({ host: '127.0.0.1' });

  app.get('/stats', (_req, res) => res.json(stats));

  app.post('/mcp', async (req, res) => {
    if (isStatelessRequest(req)) {
      stats.stateless++;
      if (req.body?.method === 'server/discover') stats.discovers++;
      return handleStateless(req, res);
    }
    const id = req.headers['mcp-session-id'];
    if (id) {
      const session = sessions.get(id);
      if (!session) return res.status(404).json({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } });
      return session.transport.handleRequest(req, res, req.body);
    }
    if (req.body?.method !== 'initialize') {
      return res.status(400).json({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'No session: send initialize first' } });
    }
    stats.initializes++;
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore,
      retryInterval: 2000,
      onsessioninitialized: (sid) => {
        stats.sessions++;
        sessions.set(sid, { transport, server });
      },
    });
    const server = buildServer({
      closeStream: (_sid, requestId) => transport.closeSSEStream(requestId),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
      server.close().catch(() => {});
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });

  const sessionOnly = async (req, res) => {
    const session = sessions.get(req.headers['mcp-session-id'] ?? '');
    if (!session) {
      const status = req.headers['mcp-session-id'] ? 404 : 400;
      return res.status(status).json({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Unknown or missing session' } });
    }
    return session.transport.handleRequest(req, res);
  };
  app.get('/mcp', sessionOnly);
  app.delete('/mcp', sessionOnly);

  await new Promise((resolve, reject) => {
    const listener = app.listen(port, '127.0.0.1', () => {
      console.log(`listening http://127.0.0.1:${listener.address().port}/mcp`);
      resolve();
    });
    listener.once('error', reject);
  });
}
