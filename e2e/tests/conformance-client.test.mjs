// The official MCP conformance suite's client authorization scenarios, run against
// `gatehouse upstream connect --headless` (the gateway's own upstream OAuth client): the suite
// starts a mock MCP server and authorization server per scenario and runs our command with
// the server's URL appended (through e2e/lib/conformance-client.mjs, which passes on the
// scenario's pre-registered credentials as ordinary gatehouse flags).
//
// Runs: `--suite auth` (2025-11-25 wire), the same at `--spec-version 2026-07-28`, the
// 2026-07-28 and 2025-03-26 auth scenarios outside that suite (one by one, `--force`), and the
// `client-credentials-*` extension scenarios. The table goes to e2e/conformance/client-results.md.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { E2E, NODE24, SUITE, verdict } from '../lib/conformance.mjs';
import { gatehouseBin } from '../lib/server.mjs';

const RESULTS_FILE = path.join(E2E, 'conformance/client-results.md');
const SHIM = path.join(E2E, 'lib/conformance-client.mjs');
const SINGLE = [
  'auth/resource-mismatch',
  'auth/offline-access-scope',
  'auth/offline-access-not-supported',
  'auth/authorization-server-migration',
  'auth/iss-supported',
  'auth/iss-not-advertised',
  'auth/iss-supported-missing',
  'auth/iss-wrong-issuer',
  'auth/iss-unexpected',
  'auth/iss-normalized',
  'auth/metadata-issuer-mismatch',
  'auth/2025-03-26-oauth-metadata-backcompat',
  'auth/2025-03-26-oauth-endpoint-fallback',
  'auth/client-credentials-basic',
  'auth/client-credentials-jwt',
];
// Extension scenarios of the suite this client does not implement (listed in the table).
const NOT_ATTEMPTED = {
  'auth/dpop': 'DPoP (RFC 9449) is not implemented',
  'auth/dpop-nonce': 'DPoP (RFC 9449) is not implemented',
  'auth/enterprise-managed-authorization': 'the ID-JAG token exchange extension is not implemented',
  'auth/wif-jwt-bearer': 'the workload identity JWT bearer extension is not implemented',
};

/** results[run][scenario] = verdict */
const results = { auth: {}, auth2026: {}, single: {} };

async function runClient(args, { timeoutMs = 600_000 } = {}) {
  const outDir = await mkdtemp(path.join(os.tmpdir(), 'gh-conformance-client-'));
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'gh-conformance-data-'));
  try {
    const command = `${NODE24} ${SHIM}`;
    const output = await new Promise((resolve, reject) => {
      const child = spawn(NODE24, [SUITE, 'client', '--command', command, ...args, '--output-dir', outDir], {
        cwd: E2E,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, GATEHOUSE_BIN: gatehouseBin(), GATEHOUSE_DATA_DIR: dataDir },
      });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.stderr.on('data', (d) => (text += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`conformance client ${args.join(' ')} did not finish\n${text.slice(-4000)}`));
      }, timeoutMs);
      child.on('error', reject);
      child.on('close', () => {
        clearTimeout(timer);
        resolve(text);
      });
    });
    const scenarios = new Map();
    const authDir = path.join(outDir, 'auth');
    for (const dir of await readdir(authDir).catch(() => [])) {
      const m = /^(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(dir);
      if (!m) continue;
      const checks = JSON.parse(await readFile(path.join(authDir, dir, 'checks.json'), 'utf8'));
      scenarios.set(`auth/${m[1]}`, checks);
    }
    return { scenarios, output };
  } finally {
    await rm(outDir, { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
  }
}

function record(run, scenarios, output) {
  const failing = [];
  for (const [scenario, checks] of scenarios) {
    const v = verdict(checks);
    results[run][scenario] = v;
    if (!v.pass) failing.push(`${scenario}: ${v.failures.map((f) => f.description).join('; ')}`);
  }
  assert.deepEqual(failing, [], `failing scenarios:\n${failing.join('\n')}\n${output.slice(-3000)}`);
}

describe('MCP conformance suite: client authorization scenarios against `upstream connect --headless`', () => {
  after(writeResults);

  test('--suite auth', { timeout: 600_000 }, async () => {
    const { scenarios, output } = await runClient(['--suite', 'auth']);
    assert.ok(scenarios.size >= 14, `the suite ran its scenarios (got ${scenarios.size})\n${output.slice(-3000)}`);
    record('auth', scenarios, output);
  });

  test('--suite auth --spec-version 2026-07-28', { timeout: 600_000 }, async () => {
    const { scenarios, output } = await runClient(['--suite', 'auth', '--spec-version', '2026-07-28']);
    assert.ok(scenarios.size >= 14, `the suite ran its scenarios (got ${scenarios.size})\n${output.slice(-3000)}`);
    record('auth2026', scenarios, output);
  });

  for (const scenario of SINGLE) {
    test(scenario, { timeout: 120_000 }, async () => {
      const { scenarios, output } = await runClient(['--scenario', scenario, '--force']);
      assert.ok(scenarios.has(scenario), `the scenario ran\n${output.slice(-3000)}`);
      assert.ok(scenarios.get(scenario).length > 0, 'the scenario emitted checks');
      record('single', scenarios, output);
    });
  }
});

function cell(v) {
  if (!v) return 'not run';
  return `${v.pass ? 'pass' : 'FAIL'} (${v.passed}/${v.passed + v.failed})`;
}

async function writeResults() {
  // A partial run (a filtered test name) leaves the committed table alone.
  if (Object.values(results).some((r) => Object.keys(r).length === 0)) return;
  const lines = [
    '# MCP conformance suite: client authorization scenarios',
    '',
    'Written by `e2e/tests/conformance-client.test.mjs` on every run (do not edit by hand).',
    'Suite: `@modelcontextprotocol/conformance` 0.2.0-alpha.12, client under test:',
    '`gatehouse upstream connect --headless` (via `e2e/lib/conformance-client.mjs`). A scenario passes',
    'when none of its checks fails; counts are passed checks / scored checks.',
    '',
  ];
  const sections = [
    ['`--suite auth` (2025-11-25)', results.auth],
    ['`--suite auth --spec-version 2026-07-28`', results.auth2026],
    ['Other auth scenarios, one by one (`--scenario X --force`)', results.single],
  ];
  for (const [label, rows] of sections) {
    const entries = Object.entries(rows).sort(([a], [b]) => a.localeCompare(b));
    lines.push(`## ${label}`, '', `Passing: ${entries.filter(([, v]) => v.pass).length}/${entries.length}.`, '');
    lines.push('| scenario | result |', '|---|---|');
    for (const [scenario, v] of entries) lines.push(`| ${scenario} | ${cell(v)} |`);
    lines.push('');
  }
  lines.push('## Not attempted', '', '| scenario | why |', '|---|---|');
  for (const [scenario, why] of Object.entries(NOT_ATTEMPTED)) lines.push(`| ${scenario} | ${why} |`);
  lines.push('');
  await mkdir(path.dirname(RESULTS_FILE), { recursive: true });
  await writeFile(RESULTS_FILE, lines.join('\n'));
}
