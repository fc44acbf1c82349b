import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError } from '../src/errdefs/errors.js';
import { DEFAULT_CONFIG, DEFAULT_CONFIG_PATH, loadConfig, parseConfig } from '../src/config/config.js';

const tmp = mkdtempSync(join(tmpdir(), 'flint-config-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function configFile(content: unknown): string {
  const path = join(tmp, `config-${++n}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

/** The error loadConfig throws, or undefined. */
function failure(run: () => unknown): Error | undefined {
  try {
    run();
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

t.test('lookup order: config_path, then $FLINT_CONFIG, then the well-known path, then defaults', (t) => {
  const fromArg = configFile({ logLevel: 'debug' });
  const fromEnv = configFile({ logLevel: 'warn' });
  const fromDefault = configFile({ logLevel: 'error' });
  const absent = join(tmp, 'absent.json');

  let loaded = loadConfig(fromArg, { FLINT_CONFIG: fromEnv }, fromDefault);
  t.same([loaded.path, loaded.config.logLevel], [fromArg, 'debug'], 'config_path wins over env and default');

  loaded = loadConfig(undefined, { FLINT_CONFIG: fromEnv }, fromDefault);
  t.same([loaded.path, loaded.config.logLevel], [fromEnv, 'warn'], '$FLINT_CONFIG wins over the default path');

  loaded = loadConfig('', { FLINT_CONFIG: '' }, fromDefault);
  t.same([loaded.path, loaded.config.logLevel], [fromDefault, 'error'], 'empty strings count as unset');

  loaded = loadConfig(undefined, {}, absent);
  t.equal(loaded.path, undefined, 'an absent well-known file means the defaults');
  t.same(loaded.config, DEFAULT_CONFIG);
  t.end();
});

t.test('the well-known path is /etc/flint/config.json', (t) => {
  t.equal(DEFAULT_CONFIG_PATH, '/etc/flint/config.json');
  if (existsSync(DEFAULT_CONFIG_PATH)) {
    t.equal(loadConfig(undefined, {}).path, DEFAULT_CONFIG_PATH, 'this machine has one: it is used');
  } else {
    t.same(loadConfig(undefined, {}), { config: DEFAULT_CONFIG, path: undefined }, 'no file there: the defaults');
  }
  t.end();
});

t.test('defaults fill every key left out', (t) => {
  t.same(parseConfig({}, 'x.json'), DEFAULT_CONFIG);
  t.same(DEFAULT_CONFIG, {
    mode: 'embedded',
    group: 'sandbox',
    runc: { binary: 'runc', root: '/run/containerd/runc', systemdCgroup: false },
    logLevel: 'info',
    spareServerMs: 3_000,
    agent: { address: '', dialTimeoutMs: 10_000 },
  });
  const partial = parseConfig({ runc: { root: '/tmp/r' }, agent: { dialTimeoutMs: 5 } }, 'x.json');
  t.same(partial.runc, { binary: 'runc', root: '/tmp/r', systemdCgroup: false });
  t.same(partial.agent, { address: '', dialTimeoutMs: 5 });
  t.end();
});

t.test('a full valid file is read as written', (t) => {
  const path = configFile({
    mode: 'vm',
    group: 'namespace',
    runc: { binary: '/usr/sbin/runc', root: '/run/flint/runc', systemdCgroup: true },
    logLevel: 'trace',
    spareServerMs: 0,
    agent: { address: 'vsock://3:1024', dialTimeoutMs: 2500 },
  });
  t.same(loadConfig(path, {}).config, {
    mode: 'vm',
    group: 'namespace',
    runc: { binary: '/usr/sbin/runc', root: '/run/flint/runc', systemdCgroup: true },
    logLevel: 'trace',
    spareServerMs: 0,
    agent: { address: 'vsock://3:1024', dialTimeoutMs: 2500 },
  });
  t.end();
});

/** Each bad config: the key its error must name. */
const BAD: readonly { name: string; json: unknown; key: string; says: RegExp }[] = [
  { name: 'unknown top-level key', json: { mdoe: 'vm' }, key: 'mdoe', says: /unknown key/ },
  { name: 'unknown runc key', json: { runc: { bin: 'x' } }, key: 'runc.bin', says: /unknown key/ },
  { name: 'unknown agent key', json: { agent: { port: 1 } }, key: 'agent.port', says: /unknown key/ },
  { name: 'mode not a choice', json: { mode: 'cloud' }, key: 'mode', says: /"embedded", "vm".*"cloud"/ },
  { name: 'mode wrong type', json: { mode: 1 }, key: 'mode', says: /must be one of/ },
  { name: 'group not a choice', json: { group: 'pod' }, key: 'group', says: /must be one of/ },
  { name: 'logLevel not a choice', json: { logLevel: 'verbose' }, key: 'logLevel', says: /must be one of/ },
  { name: 'runc not an object', json: { runc: 'runc' }, key: 'runc', says: /must be a JSON object/ },
  { name: 'runc null', json: { runc: null }, key: 'runc', says: /must be a JSON object/ },
  { name: 'agent an array', json: { agent: [] }, key: 'agent', says: /must be a JSON object/ },
  { name: 'agent null', json: { agent: null }, key: 'agent', says: /must be a JSON object/ },
  { name: 'runc.binary empty', json: { runc: { binary: '' } }, key: 'runc.binary', says: /non-empty string/ },
  { name: 'runc.binary a number', json: { runc: { binary: 7 } }, key: 'runc.binary', says: /non-empty string, got 7/ },
  { name: 'runc.root relative', json: { runc: { root: 'run/runc' } }, key: 'runc.root', says: /absolute path/ },
  { name: 'runc.systemdCgroup a string', json: { runc: { systemdCgroup: 'yes' } }, key: 'runc.systemdCgroup', says: /true or false/ },
  { name: 'agent.dialTimeoutMs zero', json: { agent: { dialTimeoutMs: 0 } }, key: 'agent.dialTimeoutMs', says: /positive integer/ },
  { name: 'agent.dialTimeoutMs fractional', json: { agent: { dialTimeoutMs: 1.5 } }, key: 'agent.dialTimeoutMs', says: /positive integer/ },
  { name: 'agent.dialTimeoutMs a string', json: { agent: { dialTimeoutMs: '10' } }, key: 'agent.dialTimeoutMs', says: /positive integer/ },
  { name: 'spareServerMs negative', json: { spareServerMs: -1 }, key: 'spareServerMs', says: /integer of 0 or more, got -1/ },
  { name: 'spareServerMs a string', json: { spareServerMs: '3000' }, key: 'spareServerMs', says: /integer of 0 or more/ },
  { name: 'vm mode without an agent address', json: { mode: 'vm' }, key: 'agent.address', says: /vsock:\/\/CID:PORT/ },
  { name: 'vm mode with a tcp address', json: { mode: 'vm', agent: { address: 'tcp://1:2' } }, key: 'agent.address', says: /tcp:\/\/1:2/ },
  { name: 'top level an array', json: [], key: '(top level)', says: /must be a JSON object/ },
  { name: 'top level a string', json: '"embedded"', key: '(top level)', says: /must be a JSON object/ },
];

t.test('invalid values: InvalidArgument naming the file and the key', (t) => {
  for (const c of BAD) {
    const path = configFile(c.json);
    const err = failure(() => loadConfig(path, {}));
    t.type(err, InvalidArgumentError, `${c.name}: InvalidArgumentError`);
    t.match(err?.message ?? '', `config ${path}: key "${c.key}": `, `${c.name}: names ${path} and "${c.key}"`);
    t.match(err?.message ?? '', c.says, `${c.name}: says why`);
  }
  t.end();
});

t.test('the same errors through $FLINT_CONFIG and the well-known path', (t) => {
  const path = configFile({ runc: { root: 'relative' } });
  t.match(failure(() => loadConfig(undefined, { FLINT_CONFIG: path }))?.message ?? '', `config ${path}: key "runc.root"`);
  t.match(failure(() => loadConfig(undefined, {}, path))?.message ?? '', `config ${path}: key "runc.root"`);
  t.end();
});

t.test('bad JSON names the file', (t) => {
  const path = configFile('{"mode": "embedded",');
  const err = failure(() => loadConfig(path, {}));
  t.type(err, InvalidArgumentError);
  t.match(err?.message ?? '', `config ${path}: invalid JSON`);
  const empty = configFile('');
  t.match(failure(() => loadConfig(empty, {}))?.message ?? '', `config ${empty}: invalid JSON`, 'an empty file is bad JSON too');
  t.end();
});

t.test('an explicitly named file must exist', (t) => {
  const missing = join(tmp, 'nope', 'config.json');
  for (const [how, run] of [
    ['config_path', () => loadConfig(missing, {})],
    ['$FLINT_CONFIG', () => loadConfig(undefined, { FLINT_CONFIG: missing })],
  ] as const) {
    const err = failure(run);
    t.type(err, InvalidArgumentError, `${how}: InvalidArgumentError`);
    t.match(err?.message ?? '', `config ${missing}: cannot read`, `${how}: names the file`);
    t.match(err?.message ?? '', /ENOENT/, `${how}: says why`);
  }
  t.end();
});

t.test('an unreadable well-known file is an error, not the defaults', (t) => {
  // A directory where the file should be: reading fails with EISDIR, not ENOENT.
  const dir = join(tmp, 'as-dir.json');
  mkdirSync(dir);
  const err = failure(() => loadConfig(undefined, {}, dir));
  t.type(err, InvalidArgumentError);
  t.match(err?.message ?? '', `config ${dir}: cannot read`);
  t.end();
});
