// The official MCP conformance suite's `server` scenarios, run twice: directly against our
// upstream test server (e2e/upstream/), and through the gateway in front of the same server.
//
//   suite --url ---> test server                                    (direct)
//   suite --url ---> token proxy ---> gatehouse /t/conf/mcp ---> test server   (through the gateway)
//
// The suite sends no token, so a loopback proxy adds a machine token minted with
// `gatehouse token create`; the gateway still checks it (audience, scope, revocation) on every
// request. The proxy passes Host and Origin through untouched, and gatehouse's public URL is
// the proxy's, as it would be behind any reverse proxy: so `dns-rebinding-protection` is
// judged by the gateway's own Host/Origin check.
//
// Two runs each way: `--suite all` (every scenario, each at the revision it belongs to: the
// session-based 2025-11-25 wire for most, 2026-07-28 for the stateless ones) and
// `--requirements 2026-07-28` (what that revision requires, all on the stateless wire).
// Every scenario that passes directly must pass through the gateway. The results table is
// written to e2e/conformance/server-results.md on every run.

import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { E2E, runServerSuite, verdict } from '../lib/conformance.mjs';
import { backends, diagnostics, freePort, startGatehouse } from '../lib/server.mjs';
import { startTokenProxy } from '../lib/token-proxy.mjs';
import { startUpstreamHttp } from '../lib/upstream.mjs';

const RESULTS_FILE = path.join(E2E, 'conformance/server-results.md');
const RUNS = [
  { key: 'all', label: '`--suite all`', args: ['--suite', 'all'] },
  { key: '2026-07-28', label: '`--requirements 2026-07-28`', args: ['--requirements', '2026-07-28'] },
];
const SCOPE = 'mcp:read mcp:tools mcp:resources';

// Why a scenario fails against the test server itself (the gateway cannot do better than its
// upstream). Checked: a scenario listed here that starts passing directly fails the test, so
// the notes cannot go stale.
// (Empty today: the test server passes every scenario of this suite version.)
const DIRECT_FAILURES = {};
const noteFor = (scenario) => Object.entries(DIRECT_FAILURES).find(([prefix]) => scenario.startsWith(prefix))?.[1];

/** results[run][scenario] = { direct, sqlite, postgres } verdicts */
const results = Object.fromEntries(RUNS.map((r) => [r.key, {}]));
let upstream;

async function gatewayInFront(backend) {
  // The proxy's port is chosen first: it is the gateway's public URL (token audience, PRM).
  const proxyPort = await freePort();
  const gh = await startGatehouse({ backend, publicUrl: `http://127.0.0.1:${proxyPort}` });
  try {
    await gh.cli(['workspace', 'add', 'conf']);
    await gh.cli(['upstream', 'add', 'conf', 'everything', '--url', upstream.url]);
    const { stdout } = await gh.cli(['token', 'create', '--workspace', 'conf', '--scope', SCOPE, '--expires', '1d']);
    const token = stdout.trim();
    assert.match(token, /^\S+$/, 'one machine token on stdout');
    const proxy = await startTokenProxy({ port: proxyPort, target: gh.url, token });
    return { gh, proxy, mcpUrl: `${proxy.url}/t/conf/mcp` };
  } catch (e) {
    await gh.stop();
    throw e;
  }
}

describe('MCP conformance suite: server scenarios, direct and through the gateway', () => {
  before(async () => {
    upstream = await startUpstreamHttp();
  });
  after(async () => {
    await upstream?.stop();
    await writeResults();
  });

  for (const run of RUNS) {
    test(`direct against the upstream test server: ${run.args.join(' ')}`, { timeout: 600_000 }, async (t) => {
      const { scenarios, output } = await runServerSuite(upstream.url, run.args);
      assert.ok(scenarios.size > 10, `the suite ran its scenarios (got ${scenarios.size})\n${output.slice(-3000)}`);
      const unexplained = [];
      for (const [scenario, checks] of scenarios) {
        const v = verdict(checks);
        (results[run.key][scenario] ??= {}).direct = v;
        const note = noteFor(scenario);
        if (!v.pass && !note) unexplained.push(`${scenario}: ${v.failures.map((c) => `${c.id}: ${c.errorMessage}`).join('; ')}`);
        if (v.pass && note && v.passed > 0) unexplained.push(`${scenario} now passes directly: drop its note`);
      }
      if (unexplained.length) diagnostics(t, output.slice(-6000));
      assert.deepEqual(unexplained, [], 'direct failures all have a known cause');
    });
  }

  for (const backend of backends()) {
    describe(`through the gateway [${backend}]`, () => {
      let env;
      before(async () => {
        env = await gatewayInFront(backend);
      });
      after(async () => {
        await env?.proxy.close();
        await env?.gh.stop();
      });

      for (const run of RUNS) {
        test(`every scenario that passes directly passes through the gateway: ${run.args.join(' ')}`, { timeout: 600_000 }, async (t) => {
          const { scenarios, output } = await runServerSuite(env.mcpUrl, run.args);
          const regressions = [];
          for (const [scenario, direct] of Object.entries(results[run.key]).map(([s, r]) => [s, r.direct])) {
            const v = verdict(scenarios.get(scenario));
            results[run.key][scenario][backend] = v;
            if (direct?.pass && !v.pass) {
              const why = v.ran ? v.failures.map((c) => `${c.id}: ${c.errorMessage}`).join('; ') : 'did not run';
              regressions.push(`${scenario}: ${why}`);
            }
          }
          assert.ok(env.proxy.requests() > 0, 'the suite went through the proxy');
          if (regressions.length) {
            diagnostics(t, output.slice(-6000));
            diagnostics(t, env.gh.logs().split('\n').slice(-100).join('\n'));
          }
          assert.deepEqual(regressions, [], 'scenarios passing directly but failing through the gateway');
        });
      }
    });
  }
});

function cell(v) {
  if (!v) return 'not run';
  if (!v.ran) return 'missing';
  return `${v.pass ? 'pass' : '**FAIL**'} (${v.passed}/${v.passed + v.failed})`;
}

async function writeResults() {
  // A partial run (a filtered test name, a failed start) leaves the committed table alone.
  if (RUNS.some((run) => Object.keys(results[run.key]).length === 0)) return;
  const columns = backends();
  const lines = [
    '# MCP conformance suite: server scenarios',
    '',
    'Written by `e2e/tests/conformance-server.test.mjs` on every run (do not edit by hand).',
    'Suite: `@modelcontextprotocol/conformance` 0.2.0-alpha.12. "Direct" runs it against the upstream',
    'test server (`e2e/upstream/`); "through gateway" runs it against a gatehouse workspace whose only',
    'upstream is that server, behind a loopback proxy that adds a machine token. A scenario passes',
    'when none of its checks fails (warnings are SHOULDs); counts are passed checks / scored checks.',
    '',
  ];
  for (const run of RUNS) {
    const rows = Object.entries(results[run.key]).sort(([a], [b]) => a.localeCompare(b));
    if (rows.length === 0) continue;
    const count = (col) => rows.filter(([, r]) => r[col]?.pass).length;
    lines.push(`## ${run.label}`, '');
    lines.push(
      `Passing: ${count('direct')}/${rows.length} direct; ` +
        columns.map((b) => `${count(b)}/${rows.length} through the gateway (${b})`).join(', ') +
        '.',
      '',
    );
    lines.push(`| scenario | direct | ${columns.map((b) => `through gateway (${b})`).join(' | ')} | note |`);
    lines.push(`|---|---|${columns.map(() => '---').join('|')}|---|`);
    for (const [scenario, r] of rows) {
      let note = r.direct && !r.direct.pass ? (noteFor(scenario) ?? '') : '';
      if (r.direct?.pass && r.direct.passed === 0) note = 'the scenario emitted no checks';
      lines.push(`| ${scenario} | ${cell(r.direct)} | ${columns.map((b) => cell(r[b])).join(' | ')} | ${note} |`);
    }
    lines.push('');
  }
  await mkdir(path.dirname(RESULTS_FILE), { recursive: true });
  await writeFile(RESULTS_FILE, `${lines.join('\n')}`);
}
