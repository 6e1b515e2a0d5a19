// The upstream test server (e2e/upstream/conformance-server.mjs) as the tests use it: over
// Streamable HTTP as a child process on a free loopback port, or as the stdio command a
// gateway workspace spawns itself.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { E2E, NODE24 } from './conformance.mjs';

export const UPSTREAM_SCRIPT = path.join(E2E, 'upstream/conformance-server.mjs');
const START_TIMEOUT_MS = 15_000;

/** @returns {Promise<{url: string, stats: () => Promise<object>, logs: () => string, stop: () => Promise<void>}>} */
export async function startUpstreamHttp() {
  const child = spawn(NODE24, [UPSTREAM_SCRIPT, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  child.stderr.on('data', (d) => (logs += d));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`upstream test server did not start:\n${logs}`)), START_TIMEOUT_MS);
    child.stdout.on('data', (d) => {
      logs += d;
      const m = /listening (\S+)/.exec(logs);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`upstream test server exited (${code}):\n${logs}`));
    });
  });
  const base = new URL(url);
  return {
    url,
    stats: async () => (await fetch(`${base.origin}/stats`)).json(),
    logs: () => logs,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The `gatehouse upstream add --command` value that runs the test server over stdio. */
export function stdioCommand({ spawnLog } = {}) {
  return [NODE24, UPSTREAM_SCRIPT, '--stdio', ...(spawnLog ? ['--spawn-log', spawnLog] : [])].join(' ');
}
