// Operators configure gatehouse the documented ways (DESIGN.md: gatehouse.toml, GATEHOUSE_*
// variables, flags). `gatehouse --help` advertises GATEHOUSE_CONFIG for the settings file.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { backends, gatehouseBin, run, startGatehouse } from '../lib/server.mjs';

for (const backend of backends()) {
  describe(`settings [${backend}]`, () => {
    let gh;
    let dir;
    before(async () => {
      gh = await startGatehouse({ backend }); // provides a data dir (and database) to point at
      dir = await mkdtemp(path.join(os.tmpdir(), 'gh-settings-'));
    });
    after(async () => {
      await gh?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test('GATEHOUSE_CONFIG names the settings file (as --help says)', async () => {
      const file = path.join(dir, 'gatehouse.toml');
      await writeFile(file, `log = "info"\n`);
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GATEHOUSE_')));
      env.GATEHOUSE_CONFIG = file;
      // The CLI works on the same data directory or database while the server runs.
      const args = ['workspace', 'add', 'from-env-config', '--data-dir', gh.dataDir];
      if (gh.databaseUrl) args.push('--database-url', gh.databaseUrl);
      await assert.doesNotReject(run(gatehouseBin(), args, { env }));
    });
  });
}
