#!/usr/bin/env node
// The client the conformance suite runs: `gatehouse upstream connect --headless <url>`, with
// what the scenario hands every client in MCP_CONFORMANCE_CONTEXT (pre-registered client
// credentials, a private key for private_key_jwt) passed as gatehouse's ordinary flags and
// standard input. Gatehouse itself knows nothing of the suite.
//
// Two settings every run gets, as the suite's own example client has them configured:
// - `--client-metadata-url`: the suite's mock authorization server expects the example
//   client's Client ID Metadata Document URL (it never fetches it);
// - `--call test-tool`: every mock server offers `test-tool`, and the step-up scenario
//   challenges only tools/call.
//
//   GATEHOUSE_BIN   the gatehouse binary
//   argv[2]         the MCP server URL (the suite appends it)

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const url = process.argv.at(-1);
const context = process.env.MCP_CONFORMANCE_CONTEXT ? JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT) : {};
const args = [
  'upstream',
  'connect',
  '--headless',
  '--client-metadata-url',
  'https://conformance-test.local/client-metadata.json',
  '--call',
  'test-tool',
];
const env = { ...process.env };
delete env.MCP_CONFORMANCE_CONTEXT;
delete env.GATEHOUSE_BIN; // not a gatehouse setting
if (context.client_id) args.push('--client-id', context.client_id);
if (context.private_key_pem) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gh-conf-key-'));
  const file = path.join(dir, 'key.pem');
  writeFileSync(file, context.private_key_pem, { mode: 0o600 });
  args.push('--private-key-file', file);
}
// The client_credentials scenarios are the ones that hand over a key or a secret without a
// redirect flow; the pre-registration scenario hands over a secret for the code flow.
if (String(context.name ?? '').startsWith('auth/client-credentials')) args.push('--grant', 'client_credentials');
args.push(url);
if (context.client_secret) args.push('--client-secret-stdin');
const child = spawn(process.env.GATEHOUSE_BIN ?? 'gatehouse', args, { stdio: ['pipe', 'inherit', 'inherit'], env });
child.stdin.end(context.client_secret ? `${context.client_secret}\n` : '');
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
