import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { defineCtrScenarios } from './harness/ctr-scenarios.js';
import { isClean, startContainerd, waitForClean, type Containerd } from './harness/index.js';

/**
 * The embedded-mode shim end to end, through `ctr` and a private
 * containerd, compared scenario by scenario with containerd-shim-runc-v2.
 */
const c: Containerd = await startContainerd();
t.teardown(() => c.stop());

defineCtrScenarios(t, c);

t.test('afterwards: no shims, mounts, FIFOs or bundles left', async (t) => {
  const report = await waitForClean(c, 10_000);
  t.ok(isClean(report), 'clean', { report });
  t.same(report.processes, []);
  t.same(report.mounts, []);
  t.same(report.fifos, []);
  t.same(report.bundles, []);
  const runcRoot = join('/run/containerd/runc', c.namespace);
  t.same(existsSync(runcRoot) ? readdirSync(runcRoot) : [], [], 'no runc state');
});
