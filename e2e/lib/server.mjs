// Starts a real `gatehouse serve` on a free loopback port with its own data directory (and, for
// the PostgreSQL backend, its own freshly created database), seeds a test user with the CLI, and
// tears everything down again. Every test file gets servers only through startGatehouse().

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const READY_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;

export function gatehouseBin() {
  if (process.env.GATEHOUSE_BIN) return process.env.GATEHOUSE_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/gatehouse-target');
  return path.join(target, 'debug/gatehouse');
}

/** The backends every test file runs its scenarios on: SQLite always, PostgreSQL when configured. */
export function backends() {
  return process.env.GATEHOUSE_TEST_DATABASE_URL ? ['sqlite', 'postgres'] : ['sqlite'];
}

/** A port nobody listens on right now (bind port 0, read it, close, reuse). */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

// The environment for gatehouse processes: ours minus every GATEHOUSE_* variable, so that the
// server is configured by our flags alone (and because gatehouse rejects unknown GATEHOUSE_*
// names such as GATEHOUSE_BIN or GATEHOUSE_TEST_DATABASE_URL as invalid settings).
function gatehouseEnv(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GATEHOUSE_')));
  return { ...env, ...extra };
}

/** Runs a command to completion; rejects with its output on a non-zero exit or timeout. */
export function run(cmd, args, { input, env = process.env, timeoutMs = CLI_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout: out, stderr: err });
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}\nstdout:\n${out}\nstderr:\n${err}`));
    });
    child.stdin.end(input ?? '');
  });
}

// PostgreSQL: one throwaway database per server, created and dropped through psql.
async function createPgDatabase() {
  const admin = process.env.GATEHOUSE_TEST_DATABASE_URL;
  const name = `gh_e2e_${randomBytes(6).toString('hex')}`;
  await run('psql', [admin, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE ${name}`]);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return { name, url: url.toString() };
}

async function dropPgDatabase(name) {
  const admin = process.env.GATEHOUSE_TEST_DATABASE_URL;
  // WITH (FORCE) ends connections the server's pool may still hold (PostgreSQL 13+). A drop waits
  // for a checkpoint, which on a busy disk has taken over 30 s: allow it two minutes.
  await run('psql', [admin, '-v', 'ON_ERROR_STOP=1', '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], {
    timeoutMs: 120_000,
  });
}

/**
 * @param {{backend?: 'sqlite'|'postgres', env?: Record<string,string>, publicUrl?: string}} opts  env: extra
 *   GATEHOUSE_* settings; publicUrl: the URL clients use, when something (a proxy) stands in front
 * @returns {Promise<{url:string, issuer:string, mcpUrl:string, otherMcpUrl:string, dataDir:string, databaseUrl:string|null,
 *   email:string, password:string, logs:()=>string, cli:(args:string[], input?:string)=>Promise<any>,
 *   stop:()=>Promise<void>}>}
 */
export async function startGatehouse({ backend = 'sqlite', env = {}, publicUrl } = {}) {
  const bin = gatehouseBin();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'gh-e2e-'));
  let pg = null;
  let child = null;
  let logs = '';
  const cleanup = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
    await rm(dataDir, { recursive: true, force: true });
    if (pg) await dropPgDatabase(pg.name);
  };

  try {
    if (backend === 'postgres') {
      if (!process.env.GATEHOUSE_TEST_DATABASE_URL) throw new Error('postgres backend needs GATEHOUSE_TEST_DATABASE_URL');
      pg = await createPgDatabase();
    }
    const settings = ['--data-dir', dataDir, ...(pg ? ['--database-url', pg.url] : [])];
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const publicBase = publicUrl ?? url;

    child = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--public-url', publicBase, ...settings], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Plain logs: no colour codes in what we print on failure.
      env: gatehouseEnv({ NO_COLOR: '1', RUST_LOG_STYLE: 'never', ...env }),
    });
    child.stdout.on('data', (d) => (logs += d));
    child.stderr.on('data', (d) => (logs += d));
    const exitedEarly = new Promise((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig)));
    await waitReady(`${url}/readyz`, exitedEarly, () => logs);

    const cli = (args, input) => run(bin, [...args, ...settings], { input, env: gatehouseEnv() });
    const email = 'alice@example.com';
    const password = `pw-${randomBytes(12).toString('hex')}`;
    await cli(['user', 'add', email, '--password-stdin'], `${password}\n`);
    await cli(['workspace', 'member', 'add', 'default', email]);
    await cli(['workspace', 'add', 'other']);

    return {
      url,
      issuer: publicBase,
      mcpUrl: `${publicBase}/t/default/mcp`,
      otherMcpUrl: `${publicBase}/t/other/mcp`,
      dataDir,
      databaseUrl: pg?.url ?? null,
      backend,
      email,
      password,
      cli,
      logs: () => logs,
      stop: cleanup,
    };
  } catch (e) {
    await cleanup().catch(() => {});
    e.message += `\n--- gatehouse output ---\n${logs}`;
    throw e;
  }
}

// Polls /readyz until 200; gives up after READY_TIMEOUT_MS or when the process exits.
async function waitReady(readyUrl, exitedEarly, logs) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let exitCode;
  exitedEarly.then((c) => (exitCode = c));
  let last = 'no response';
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`gatehouse exited (${exitCode}) before it was ready`);
    try {
      const res = await fetch(readyUrl, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = e.cause?.code ?? e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gatehouse not ready within ${READY_TIMEOUT_MS} ms at ${readyUrl} (last: ${last})\n${logs()}`);
}

/**
 * Wraps a test body so that, when it fails, the server's output is attached to the test report.
 * Usage: test('name', withLogs(() => gh, async (t) => { ... }))
 */
export function withLogs(getServer, fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (e) {
      const gh = getServer();
      if (gh) diagnostics(t, `--- gatehouse output (${gh.backend}) ---\n${gh.logs().split('\n').slice(-150).join('\n')}`);
      throw e;
    }
  };
}

/** t.diagnostic() one line at a time: TAP diagnostics are single lines (else \n shows escaped). */
export function diagnostics(t, text) {
  for (const line of text.replace(/\n$/, '').split('\n')) t.diagnostic(line);
}
