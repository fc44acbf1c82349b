import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { containerd, EventBridgeDescriptor, TaskClient, TaskDescriptor } from '../src/generated/index.js';
import { encodeFrame, FrameType, MESSAGE_LENGTH_MAX } from '../src/ttrpc/channel.js';
import { Client } from '../src/ttrpc/client.js';
import { decodeRequest } from '../src/ttrpc/codec.js';
import { Code } from '../src/ttrpc/codes.js';
import { Metadata, NAMESPACE_KEY } from '../src/ttrpc/metadata.js';
import { dialHybrid } from '../src/vsock/hybrid-dial.js';
import { startAgent, type AgentHandle } from './harness/flint-agent.js';
import { busyboxRootfs, CONTAINER_PATH, RUNTIMES, startContainerd, type Containerd } from './harness/index.js';
import { isRunning } from './harness/procfs.js';
import { AGENT_API_PORT, frameHeader, fuzzSeed, RawConnection, rawFrame, requestFrame, SeededRandom, type RawRequest } from './harness/raw-ttrpc.js';
import { rssKiB, shimPidOf, shimSocketOf, taskClientAt } from './harness/shim-server.js';
import { generateCase, runCase, type FuzzTarget } from './harness/ttrpc-fuzz.js';

/**
 * Bad bytes on the two ttrpc servers flint runs: the shim server (serving a
 * running container, started through a private containerd) and flint-agent
 * on a hybrid vsock socket (serving a container started through a VM-mode
 * shim). Each bad input earns its status or a dropped connection, never a
 * crash: afterwards both processes are alive, answer on a fresh
 * connection, and the containers still run and exec.
 */

/** Cases per server; each is a few ms, so more cost little (FLINT_FUZZ_CASES to change). */
const FUZZ_CASES = Number(process.env.FLINT_FUZZ_CASES ?? 1000);
const ANSWER_TIMEOUT_MS = 5_000;
const TASK = TaskDescriptor.name;

// The agent first: its exit hook then runs before containerd's, so its containers are gone before cgroups are removed.
const agent: AgentHandle = await startAgent();
const c: Containerd = await startContainerd();
t.teardown(async () => {
  // The VM-mode task is removed through the agent, so containerd goes first.
  await c.stop();
  await agent.dispose();
});

async function runDetached(id: string, extra: string[] = []): Promise<void> {
  const r = await c.ctr(['run', '-d', '--runtime', RUNTIMES.flint, ...extra, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, 'sleep', '1000'], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`ctr run ${id} failed: ${r.stderr}`);
}

const hostId = c.newId('bb');
const vmId = c.newId('bbvm');
await runDetached(hostId);
await runDetached(vmId, ['--runtime-config-path', agent.configPath]);
const shimSocket = shimSocketOf(c, hostId);
const shimPid = shimPidOf(shimSocket);
const namespaceMd = [{ key: NAMESPACE_KEY, value: c.namespace }];

/** One live server under test. */
interface Target {
  readonly name: string;
  readonly id: string;
  readonly pid: number;
  open(): Promise<RawConnection>;
  /** A fresh connection through the product's own client: Connect and State on the running container. */
  healthy(t: Test): Promise<void>;
  readonly fuzz: FuzzTarget;
}

function fuzzTarget(id: string, withEventBridge: boolean): FuzzTarget {
  const registered = new Set(Object.values(TaskDescriptor.methods).map((m) => `${TASK}/${m.name}`));
  if (withEventBridge) for (const m of Object.values(EventBridgeDescriptor.methods)) registered.add(`${EventBridgeDescriptor.name}/${m.name}`);
  const enc = containerd.task.v2;
  return {
    seeds: [
      { service: TASK, method: 'State', payload: enc.StateRequest.encode({ id }).finish(), metadata: namespaceMd },
      { service: TASK, method: 'Connect', payload: enc.ConnectRequest.encode({ id }).finish(), metadata: namespaceMd },
      { service: TASK, method: 'State', payload: enc.StateRequest.encode({ id, execId: 'nope' }).finish(), metadata: namespaceMd },
      { service: TASK, method: 'Pids', payload: enc.PidsRequest.encode({ id: 'not-there' }).finish(), metadata: namespaceMd, timeoutNano: 2e9 },
      { service: 'fuzz.v1.Nothing', method: 'Here', payload: Buffer.from('x') },
      { service: TASK, method: 'Nope', payload: new Uint8Array() },
    ],
    registered,
    safeMethods: new Set([`${TASK}/State`, `${TASK}/Connect`, `${TASK}/Pids`, `${TASK}/Stats`]),
  };
}

async function expectHealthy(t: Test, task: TaskClient, id: string): Promise<void> {
  const connect = await task.connect({ id }, { timeoutMs: ANSWER_TIMEOUT_MS });
  t.ok(connect.taskPid > 0, `Connect answers with the task pid (${connect.taskPid})`);
  const state = await task.state({ id }, { timeoutMs: ANSWER_TIMEOUT_MS });
  t.equal(state.status, containerd.v1.types.Status.RUNNING, 'State: the container is RUNNING');
}

const targets: Target[] = [
  {
    name: 'shim',
    id: hostId,
    pid: shimPid,
    open: () => RawConnection.unix(shimSocket),
    healthy: async (t) => {
      const { client, task } = await taskClientAt(shimSocket, c.namespace);
      try {
        await expectHealthy(t, task, hostId);
      } finally {
        await client.close();
      }
    },
    fuzz: fuzzTarget(hostId, false),
  },
  {
    name: 'agent',
    id: vmId,
    pid: agent.pid,
    open: () => RawConnection.hybrid(agent.socket),
    healthy: async (t) => {
      const socket = await dialHybrid(agent.socket, AGENT_API_PORT, { timeoutMs: ANSWER_TIMEOUT_MS });
      const client = new Client(socket, { metadata: new Metadata({ [NAMESPACE_KEY]: c.namespace }) });
      try {
        await expectHealthy(t, new TaskClient(client), vmId);
      } finally {
        await client.close();
      }
    },
    fuzz: fuzzTarget(vmId, true),
  },
];

function stateFrame(streamId: number, id: string): Buffer {
  return requestFrame(streamId, { service: TASK, method: 'State', payload: containerd.task.v2.StateRequest.encode({ id }).finish(), metadata: namespaceMd });
}

/** Sends a State on `streamId` and checks it is answered OK: the connection is still in step. */
async function expectInStep(t: Test, conn: RawConnection, streamId: number, id: string): Promise<void> {
  await conn.write(stateFrame(streamId, id));
  const r = await conn.waitFor(streamId, ANSWER_TIMEOUT_MS);
  t.ok(typeof r === 'object' && r.status === undefined, `the same connection still answers (stream ${streamId}: ${describe(r)})`);
}

function describe(r: unknown): string {
  if (typeof r !== 'object' || r === null) return String(r);
  const { status } = r as { status?: { code: number; message: string } };
  return status ? `code ${status.code} ${JSON.stringify(status.message)}` : 'OK';
}

/** Opens a connection, runs `body`, and always closes it. */
async function withConn(target: Target, body: (conn: RawConnection) => Promise<void>): Promise<void> {
  const conn = await target.open();
  try {
    await body(conn);
  } finally {
    conn.destroy();
  }
}

async function expectStatus(t: Test, conn: RawConnection, streamId: number, code: Code, message: RegExp, what: string): Promise<void> {
  const r = await conn.waitFor(streamId, ANSWER_TIMEOUT_MS);
  t.ok(typeof r === 'object', `${what}: answered (${describe(r)})`);
  if (typeof r !== 'object') return;
  t.equal(r.status?.code, code, `${what}: code ${Code[code]}`);
  t.match(r.status?.message ?? '', message, `${what}: message`);
}

// Bytes that do not decode as a ttrpc.Request (checked below, so the cases stay honest).
const GARBAGE_REQUESTS: readonly Buffer[] = [
  Buffer.from([0x0f, 0x00]), // field 1 with wire type 7
  Buffer.from([0x0a, 0x7f, 0x41]), // a string field claiming 127 bytes
  Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // an endless varint tag
];
// A StateRequest payload that does not decode (a length past the end).
const GARBAGE_PAYLOAD = Buffer.from([0x0a, 0x7f, 0x01]);

t.test('the garbage used below really does not decode', async (t) => {
  for (const g of GARBAGE_REQUESTS) t.throws(() => decodeRequest(g), `${g.toString('hex')} is not a Request`);
  t.throws(() => containerd.task.v2.StateRequest.decode(GARBAGE_PAYLOAD), 'the payload is not a StateRequest');
});

for (const target of targets) {
  t.test(`${target.name}: malformed frames get their status or a dropped connection`, async (t) => {
    const rss0 = rssKiB(target.pid);

    await t.test('a truncated header, then EOF: closed, nothing answered', async (t) => {
      await withConn(target, async (conn) => {
        await conn.write(stateFrame(1, target.id).subarray(0, 5));
        conn.end();
        t.ok(await conn.waitClosed(ANSWER_TIMEOUT_MS), 'the server closes');
        t.same(conn.responses, [], 'no answer');
      });
    });

    await t.test('a truncated body, then EOF: closed, nothing answered', async (t) => {
      await withConn(target, async (conn) => {
        const frame = stateFrame(1, target.id);
        await conn.write(frame.subarray(0, frame.length - 3));
        conn.end();
        t.ok(await conn.waitClosed(ANSWER_TIMEOUT_MS), 'the server closes');
        t.same(conn.responses, [], 'no answer');
      });
    });

    await t.test('a frame dribbled in pieces with pauses is answered once whole', async (t) => {
      await withConn(target, async (conn) => {
        const frame = stateFrame(3, target.id);
        for (const [from, to] of [[0, 3], [3, 11], [11, frame.length - 1], [frame.length - 1, frame.length]] as const) {
          await conn.write(frame.subarray(from, to));
          await new Promise((resolve) => setTimeout(resolve, 30));
          if (to < frame.length) t.same(conn.responses, [], `no answer after ${to}/${frame.length} bytes`);
        }
        const r = await conn.waitFor(3, ANSWER_TIMEOUT_MS);
        t.ok(typeof r === 'object' && r.status === undefined, `answered OK (${describe(r)})`);
      });
    });

    await t.test('length 4 MiB + 1: ResourceExhausted on its stream, and the connection goes on', async (t) => {
      await withConn(target, async (conn) => {
        const length = MESSAGE_LENGTH_MAX + 1;
        await conn.write(Buffer.concat([frameHeader(length, 5, FrameType.Request), Buffer.alloc(length, 0x41)]));
        await expectStatus(t, conn, 5, Code.ResourceExhausted, new RegExp(`message length ${length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`), 'oversized frame');
        await expectInStep(t, conn, 7, target.id);
      });
    });

    await t.test('length 0xFFFFFFFF: the data is skipped, not buffered, and nothing is answered early', async (t) => {
      await withConn(target, async (conn) => {
        const before = rssKiB(target.pid)!;
        await conn.write(frameHeader(0xffffffff, 9, FrameType.Request));
        const chunk = Buffer.alloc(1 << 20, 0x42);
        for (let i = 0; i < 128; i++) await conn.write(chunk);
        await new Promise((resolve) => setTimeout(resolve, 200));
        t.same(conn.responses, [], 'no answer while the announced data is still coming');
        t.ok(conn.isOpen, 'the connection stays open');
        const after = rssKiB(target.pid)!;
        // Skipped chunks are garbage until the next GC, so some growth is expected; a server keeping them would grow by 128 MiB.
        t.ok(after - before < 64 * 1024, `RSS grew ${after - before} KiB for 128 MiB skipped (bound 64 MiB)`);
      });
    });

    await t.test('even stream ids: InvalidArgument', async (t) => {
      await withConn(target, async (conn) => {
        await conn.write(Buffer.concat([stateFrame(2, target.id), stateFrame(0, target.id), stateFrame(0xfffffffe, target.id)]));
        for (const id of [2, 0, 0xfffffffe]) await expectStatus(t, conn, id, Code.InvalidArgument, /StreamID must be odd/, `stream ${id}`);
        await expectInStep(t, conn, 11, target.id);
      });
    });

    await t.test('a Request that is not protobuf: InvalidArgument', async (t) => {
      await withConn(target, async (conn) => {
        let id = 13;
        for (const g of GARBAGE_REQUESTS) {
          await conn.write(encodeFrame(id, FrameType.Request, g));
          await expectStatus(t, conn, id, Code.InvalidArgument, /^unmarshal request error/, g.toString('hex'));
          id += 2;
        }
        await expectInStep(t, conn, id, target.id);
      });
    });

    await t.test('an empty Request frame names no service: Unimplemented', async (t) => {
      await withConn(target, async (conn) => {
        await conn.write(encodeFrame(21, FrameType.Request, new Uint8Array()));
        await expectStatus(t, conn, 21, Code.Unimplemented, /^service $/, 'empty request');
      });
    });

    await t.test('a valid Request with a payload that does not decode: Internal', async (t) => {
      await withConn(target, async (conn) => {
        for (const [i, method] of (['State', 'Create', 'Kill', 'Shutdown'] as const).entries()) {
          const id = 23 + 2 * i;
          await conn.write(requestFrame(id, { service: TASK, method, payload: GARBAGE_PAYLOAD, metadata: namespaceMd }));
          await expectStatus(t, conn, id, Code.Internal, /^ttrpc: error unmarshalling payload/, `${method} with garbage`);
        }
        await expectInStep(t, conn, 31, target.id);
      });
    });

    await t.test('unknown services and methods: Unimplemented', async (t) => {
      await withConn(target, async (conn) => {
        const cases: Array<[RawRequest, RegExp]> = [
          [{ service: 'containerd.task.v3.Task', method: 'State' }, /^service containerd\.task\.v3\.Task$/],
          [{ service: TASK, method: 'Explode' }, /^method Explode$/],
          [{ service: TASK, method: 'state' }, /^method state$/],
          [{ service: '\u0000\uffff', method: '../../etc/passwd' }, /^service /],
          [{ service: 'x'.repeat(100_000), method: 'y' }, /^service x+$/],
        ];
        let id = 33;
        for (const [request, message] of cases) {
          await conn.write(requestFrame(id, request));
          await expectStatus(t, conn, id, Code.Unimplemented, message, `${request.service.slice(0, 30)}/${request.method}`);
          id += 2;
        }
        await expectInStep(t, conn, id, target.id);
      });
    });

    await t.test('Response and Data frames sent to a server are ignored', async (t) => {
      await withConn(target, async (conn) => {
        await conn.write(Buffer.concat([rawFrame(51, FrameType.Response, Buffer.from([0x12, 0x01, 0x00])), rawFrame(53, FrameType.Data, Buffer.from('data')), rawFrame(55, FrameType.Response, Buffer.alloc(0))]));
        await expectInStep(t, conn, 57, target.id);
        t.same(conn.responses.map((r) => r.streamId), [57], 'only the request was answered');
      });
    });

    await t.test('an unknown frame type: the connection is dropped, nothing answered', async (t) => {
      for (const type of [0, 4, 0x7f, 0xff]) {
        await withConn(target, async (conn) => {
          await conn.write(rawFrame(61, type, Buffer.from('hello')));
          t.ok(await conn.waitClosed(ANSWER_TIMEOUT_MS), `type ${type}: closed`);
          t.same(conn.responses, [], `type ${type}: no answer`);
        });
      }
    });

    await t.test('a burst of 200 bad frames in one write: each answered on its own stream', async (t) => {
      await withConn(target, async (conn) => {
        const frames: Buffer[] = [];
        const want = new Map<number, Code>();
        for (let i = 0; i < 200; i++) {
          const id = 101 + 2 * i;
          switch (i % 4) {
            case 0:
              frames.push(encodeFrame(id, FrameType.Request, GARBAGE_REQUESTS[i % GARBAGE_REQUESTS.length]!));
              want.set(id, Code.InvalidArgument);
              break;
            case 1:
              frames.push(requestFrame(id, { service: TASK, method: 'State', payload: GARBAGE_PAYLOAD }));
              want.set(id, Code.Internal);
              break;
            case 2:
              frames.push(requestFrame(id, { service: 'nope.Nope', method: 'Nope' }));
              want.set(id, Code.Unimplemented);
              break;
            default:
              frames.push(requestFrame(id, { service: TASK, method: 'State', payload: containerd.task.v2.StateRequest.encode({ id: 'absent' }).finish(), metadata: namespaceMd }));
              want.set(id, Code.NotFound);
          }
        }
        await conn.write(Buffer.concat(frames));
        const deadline = Date.now() + 10_000;
        while (conn.responses.length < want.size && conn.isOpen && Date.now() < deadline) await conn.waitChange(deadline - Date.now());
        const wrong = conn.responses.filter((r) => want.get(r.streamId) !== r.status?.code);
        t.equal(conn.responses.length, 200, 'all 200 answered');
        t.same(wrong.map((r) => `${r.streamId}:${r.status?.code}`), [], 'each with its own status');
      });
    });

    await t.test('afterwards: alive, a fresh connection works', async (t) => {
      t.ok(isRunning(target.pid), `${target.name} process ${target.pid} is alive`);
      await target.healthy(t);
      const rss1 = rssKiB(target.pid)!;
      t.comment(`${target.name} RSS ${rss0} KiB → ${rss1} KiB`);
    });
  });
}

t.test('agent: a bad hybrid handshake is dropped without an ack', async (t) => {
  const lines: Array<[string, Buffer]> = [
    ['not a number', Buffer.from('CONNECT abc\n')],
    ['port past 32 bits', Buffer.from('CONNECT 4294967296\n')],
    ['no listener on the port', Buffer.from('CONNECT 1234\n')],
    ['another verb', Buffer.from('HELLO 10789\n')],
    ['ttrpc without a handshake', stateFrame(1, vmId)],
    ['a line that never ends', Buffer.alloc(64 * 1024, 0x43)],
    ['binary garbage', new SeededRandom(7).bytes(512)],
  ];
  for (const [what, bytes] of lines) {
    const socket = connect({ path: agent.socket });
    socket.on('error', () => undefined);
    let received = Buffer.alloc(0);
    socket.on('data', (b: Buffer) => (received = Buffer.concat([received, b])));
    const closed = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 8_000);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    socket.write(bytes);
    t.ok(await closed, `${what}: closed`);
    t.equal(received.toString('latin1'), '', `${what}: no ack`);
    socket.destroy();
  }
  t.ok(agent.alive, 'agent alive');
  await targets[1]!.healthy(t);
});

const seed = fuzzSeed();
for (const target of targets) {
  t.test(`${target.name}: seeded fuzz, ${FUZZ_CASES} cases (FLINT_FUZZ_SEED=${seed})`, async (t) => {
    t.comment(`seed ${seed}: replay with FLINT_FUZZ_SEED=${seed}`);
    const rng = new SeededRandom(seed ^ (target.name === 'agent' ? 0x9e3779b9 : 0));
    const probe: RawRequest = target.fuzz.seeds[0]!;
    const kinds = new Map<string, number>();
    const codes = new Map<number, number>();
    const failures: string[] = [];
    let conn: RawConnection | undefined;
    let drops = 0;
    try {
      for (let i = 0; i < FUZZ_CASES; i++) {
        const fc = generateCase(rng, target.fuzz);
        kinds.set(fc.kind, (kinds.get(fc.kind) ?? 0) + 1);
        if (conn === undefined || !conn.isOpen || rng.chance(0.3)) {
          conn?.destroy();
          conn = await target.open();
        }
        const result = await runCase(conn, fc, probe, 0x7f000001 + 2 * i, ANSWER_TIMEOUT_MS);
        for (const code of result.codes) codes.set(code, (codes.get(code) ?? 0) + 1);
        if (fc.expect.drop) drops++;
        if (!result.ok) failures.push(`case ${i} (${fc.kind}, ${fc.bytes.toString('hex').slice(0, 120)}): ${result.detail}`);
        if (!result.reusable) {
          conn.destroy();
          conn = undefined;
        }
        if (i % 50 === 49) {
          if (!isRunning(target.pid)) {
            failures.push(`case ${i}: ${target.name} died`);
            break;
          }
          await target.healthy(t);
        }
      }
    } finally {
      conn?.destroy();
    }
    t.same(failures, [], 'every case handled as the protocol says');
    t.comment(`kinds ${JSON.stringify(Object.fromEntries(kinds))}; answers by code ${JSON.stringify(Object.fromEntries(codes))}; dropped connections ${drops}`);
    t.ok(isRunning(target.pid), `${target.name} alive after the fuzz`);
    await target.healthy(t);
  });
}

t.test('afterwards: both containers still run and exec', async (t) => {
  const ls = await c.ctr(['task', 'ls']);
  for (const id of [hostId, vmId]) {
    t.match(ls.stdout.toString(), new RegExp(`${id}\\s+\\d+\\s+RUNNING`), `${id} RUNNING`);
    const exec = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'after', id, 'echo', 'still here'], { timeoutMs: 30_000 });
    t.equal(exec.code, 0, `${id}: exec works ${exec.stderr}`);
    t.equal(exec.stdout.toString(), 'still here\n', `${id}: exec output`);
  }
  t.ok(isRunning(shimPid), 'the shim server that took the bad bytes is the one still serving');
  t.equal(shimPidOf(shimSocket), shimPid, 'same shim pid');
  t.ok(agent.alive, 'the agent is alive');
});
