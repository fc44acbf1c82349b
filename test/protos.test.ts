import t from 'tap';
import $protobuf from 'protobufjs/minimal.js';
import {
  containerd,
  EventBridgeClient,
  EventBridgeDescriptor,
  EventsDescriptor,
  flint,
  type EventsService,
  google,
  io,
  runtimeoptions,
  TaskClient,
  TaskDescriptor,
  ttrpc,
} from '../src/generated/index.js';
import type { CallContext } from '../src/ttrpc/context.js';
import { Metadata } from '../src/ttrpc/metadata.js';

const GO_ZERO_TIME_SECONDS = -62135596800;

/** Bytes from a mix of byte values and ASCII strings, as the contract writes them. */
function wire(...parts: Array<number | string>): string {
  return Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : Buffer.from(p, 'ascii')))).toString('hex');
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
}

t.test('Connect request matches the bytes containerd sends (shim-v2-contract §1)', async (t) => {
  const payload = containerd.task.v2.ConnectRequest.encode({ id: 'c1' }).finish();
  t.equal(hex(payload), '0a026331');
  const body = ttrpc.Request.encode({
    service: 'containerd.task.v2.Task',
    method: 'Connect',
    payload,
    metadata: [{ key: 'containerd-namespace-ttrpc', value: 'default' }],
  }).finish();
  const expected = wire(
    0x0a, 0x17, 'containerd.task.v2.Task',
    0x12, 0x07, 'Connect',
    0x1a, 0x04, 0x0a, 0x02, 0x63, 0x31,
    0x2a, 0x25, 0x0a, 0x1a, 'containerd-namespace-ttrpc', 0x12, 0x07, 'default',
  );
  t.equal(hex(body), expected);
  t.equal(body.length, 0x4f, 'frame header length');

  const back = ttrpc.Request.decode(body);
  t.equal(back.service, 'containerd.task.v2.Task');
  t.equal(back.method, 'Connect');
  t.equal(back.timeoutNano, 0);
  t.equal(typeof back.timeoutNano, 'number');
  t.same(back.metadata.map((kv) => [kv.key, kv.value]), [['containerd-namespace-ttrpc', 'default']]);
  t.equal(containerd.task.v2.ConnectRequest.decode(back.payload).id, 'c1');
});

t.test('Connect response payload and error status', async (t) => {
  const payload = containerd.task.v2.ConnectResponse.encode({ shimPid: 1234, taskPid: 5678 }).finish();
  t.equal(hex(payload), '08d20910ae2c');
  t.equal(hex(ttrpc.Response.encode({ payload }).finish()), '120608d20910ae2c');

  const resp = ttrpc.Response.decode(fromHex('12 06 08 d2 09 10 ae 2c'));
  t.equal(resp.status, null, 'success carries no status');
  const connect = containerd.task.v2.ConnectResponse.decode(resp.payload);
  t.equal(connect.shimPid, 1234);
  t.equal(connect.taskPid, 5678);
  t.equal(connect.version, '');

  const errBody = wire(0x0a, 0x24, 0x08, 0x05, 0x12, 0x20, 'container not created: not found');
  const err = ttrpc.Response.decode(fromHex(errBody));
  t.equal(err.status?.code, 5);
  t.equal(err.status?.message, 'container not created: not found');
  t.equal(err.payload.length, 0);
  t.equal(hex(ttrpc.Response.encode({ status: { code: 5, message: 'container not created: not found' } }).finish()), errBody);
});

t.test('64-bit integers are plain numbers', async (t) => {
  t.equal($protobuf.util.Long, undefined, 'Long support is off');

  const zero = google.protobuf.Timestamp.decode(google.protobuf.Timestamp.encode({ seconds: GO_ZERO_TIME_SECONDS }).finish());
  t.equal(zero.seconds, GO_ZERO_TIME_SECONDS);
  t.equal(typeof zero.seconds, 'number');
  t.equal(zero.nanos, 0);

  const wait = containerd.task.v2.WaitResponse.decode(
    containerd.task.v2.WaitResponse.encode({ exitStatus: 137, exitedAt: { seconds: GO_ZERO_TIME_SECONDS } }).finish(),
  );
  t.equal(wait.exitedAt?.seconds, GO_ZERO_TIME_SECONDS);

  const ts = google.protobuf.Timestamp.decode(new Uint8Array(0));
  t.equal(ts.seconds, 0, 'unset int64 defaults to number 0, not Long');
  t.equal(typeof ts.seconds, 'number');

  const req = ttrpc.Request.decode(ttrpc.Request.encode({ service: 's', method: 'm', timeoutNano: 5_000_000_000 }).finish());
  t.equal(req.timeoutNano, 5_000_000_000);
  t.equal(typeof req.timeoutNano, 'number');

  const big = 2 ** 50 + 3;
  const pids = io.containerd.cgroups.v1.PidsStat.decode(io.containerd.cgroups.v1.PidsStat.encode({ current: big, limit: 0 }).finish());
  t.equal(pids.current, big);
  t.equal(typeof pids.limit, 'number');

  const usage = io.containerd.cgroups.v1.CPUUsage.decode(io.containerd.cgroups.v1.CPUUsage.encode({ perCpu: [1, 2 ** 40, 3] }).finish());
  t.same(usage.perCpu, [1, 2 ** 40, 3]);
});

t.test('field numbers match containerd', async (t) => {
  const ev = containerd.events;
  t.equal(hex(ev.TaskExit.encode({ exitStatus: 1 }).finish()), '2001', 'TaskExit.exit_status = 4');
  t.equal(hex(ev.TaskExit.encode({ exitedAt: { seconds: 1 } }).finish()), '2a020801', 'TaskExit.exited_at = 5');
  t.equal(hex(ev.TaskExit.encode({ containerId: 'a', id: 'b', pid: 3 }).finish()), '0a0161120162' + '1803');
  t.equal(hex(ev.TaskDelete.encode({ id: 'e' }).finish()), '2a0165', 'TaskDelete.id = 5');
  t.equal(hex(ev.TaskCreate.encode({ pid: 9, io: { terminal: true } }).finish()), '220220013009', 'TaskCreate io = 4, pid = 6');
  t.equal(hex(ev.TaskCheckpointed.encode({ checkpoint: 'x' }).finish()), '120178');
  t.equal(hex(ev.TaskExecStarted.encode({ pid: 7 }).finish()), '1807');

  const task = containerd.task.v2;
  t.equal(hex(task.CreateTaskRequest.encode({ options: { typeUrl: 'x' } }).finish()), '5203' + '0a0178', 'CreateTaskRequest.options = 10');
  t.equal(hex(task.CreateTaskRequest.encode({ parentCheckpoint: 'p' }).finish()), '4a0170', 'parent_checkpoint = 9');
  t.equal(hex(task.ExecProcessRequest.encode({ spec: {} }).finish()), '3a00', 'ExecProcessRequest.spec = 7');
  t.equal(hex(task.StateResponse.encode({ status: containerd.v1.types.Status.RUNNING, execId: 'e' }).finish()), '2002' + '5a0165');
  t.equal(hex(task.StateResponse.encode({ exitedAt: {} }).finish()), '5200', 'StateResponse.exited_at = 10');
  t.equal(hex(task.DeleteResponse.encode({ exitedAt: {} }).finish()), '1a00', 'DeleteResponse.exited_at = 3');
  t.equal(hex(task.KillRequest.encode({ signal: 9, all: true }).finish()), '18092001');
  t.equal(hex(task.ResizePtyRequest.encode({ width: 80, height: 24 }).finish()), '18502018');
  t.equal(hex(task.CloseIORequest.encode({ stdin: true }).finish()), '1801');
  t.equal(hex(task.ShutdownRequest.encode({ now: true }).finish()), '1001');
  t.equal(hex(task.StatsResponse.encode({ stats: {} }).finish()), '0a00');
  t.equal(hex(task.PidsResponse.encode({ processes: [{ pid: 5, info: {} }] }).finish()), '0a04' + '0805' + '1200');
  t.equal(hex(task.UpdateTaskRequest.encode({ annotations: { k: 'v' } }).finish()), '1a06' + '0a016b' + '120176', 'annotations = 3 (map)');
  t.equal(hex(containerd.types.Mount.encode({ options: ['ro'] }).finish()), '2202726f', 'Mount.options = 4');

  const env = containerd.services.events.ttrpc.v1;
  t.equal(hex(env.Envelope.encode({ event: {} }).finish()), '2200', 'Envelope.event = 4');
  t.equal(hex(env.Envelope.encode({ timestamp: { seconds: 1 }, namespace: 'n', topic: 't' }).finish()), '0a020801' + '12016e' + '1a0174');
  t.equal(hex(env.ForwardRequest.encode({ envelope: {} }).finish()), '0a00');

  const runc = containerd.runc.v1;
  t.equal(hex(runc.Options.encode({ binaryName: 'r' }).finish()), '320172', 'binary_name = 6');
  t.equal(hex(runc.Options.encode({ root: '/' }).finish()), '3a012f', 'root = 7');
  t.equal(hex(runc.Options.encode({ systemdCgroup: true }).finish()), '4801', 'systemd_cgroup = 9');
  t.equal(hex(runc.Options.encode({ ioUid: 1, ioGid: 2, criuWorkPath: 'w' }).finish()), '20012802' + '5a0177');
  t.equal(hex(runc.CheckpointOptions.encode({ emptyNamespaces: ['net'], workPath: 'w' }).finish()), '32036e6574' + '4a0177');
  t.equal(hex(runc.ProcessDetails.encode({ execId: 'e' }).finish()), '0a0165');
  t.equal(hex(runtimeoptions.v1.Options.encode({ typeUrl: 't', configPath: 'c' }).finish()), '0a0174' + '120163');
  // containerd's runtime/linux/runctypes/runc.proto, as the Go client sends it to non-runc runtimes.
  t.equal(
    hex(containerd.linux.runc.CreateOptions.encode({ noPivotRoot: true, noNewKeyring: true, shimCgroup: 's', ioUid: 1, ioGid: 2, criuWorkPath: 'w', criuImagePath: 'i' }).finish()),
    '0801' + '4001' + '4a0173' + '5001' + '5802' + '620177' + '6a0169',
    'CreateOptions: no_pivot_root = 1, no_new_keyring = 8, shim_cgroup = 9, io_uid = 10, io_gid = 11, criu_work_path = 12, criu_image_path = 13',
  );

  const v1 = io.containerd.cgroups.v1;
  t.equal(hex(v1.Metrics.encode({ memory: {} }).finish()), '2200', 'v1 Metrics.memory = 4');
  t.equal(hex(v1.Metrics.encode({ blkio: {}, pids: {} }).finish()), '1200' + '2a00', 'v1 pids = 2, blkio = 5');
  t.equal(hex(v1.MemoryStat.encode({ usage: { limit: 1 } }).finish()), '8a02' + '02' + '0801', 'v1 MemoryStat.usage = 33');
  t.equal(hex(v1.MemoryStat.encode({ kernelTcp: {} }).finish()), 'a20200', 'v1 MemoryStat.kernel_tcp = 36');
  t.equal(hex(v1.MemoryStat.encode({ totalUnevictable: 1 }).finish()), '800201', 'v1 total_unevictable = 32');
  t.equal(hex(v1.CPUStat.encode({ throttling: { throttledTime: 5 } }).finish()), '12021805');
  t.equal(hex(v1.CPUUsage.encode({ perCpu: [1, 2] }).finish()), '22020102', 'per_cpu = 4, packed');
  t.equal(hex(v1.HugetlbStat.encode({ pagesize: '2MB' }).finish()), '2203324d42');

  const v2 = io.containerd.cgroups.v2;
  t.equal(hex(v2.Metrics.encode({ memory: {} }).finish()), '2200', 'v2 Metrics.memory = 4');
  t.equal(hex(v2.Metrics.encode({ io: {}, memoryEvents: {} }).finish()), '3200' + '4200', 'v2 io = 6, memory_events = 8');
  t.equal(hex(v2.MemoryStat.encode({ usage: 1, usageLimit: 2 }).finish()), '800201' + '880202', 'v2 usage = 32, usage_limit = 33');
  t.equal(hex(v2.CPUStat.encode({ throttledUsec: 1 }).finish()), '3001');
  t.equal(hex(v2.MemoryEvents.encode({ oomKill: 1 }).finish()), '2801');

  t.equal(
    hex(flint.vm.v1.ExtraData.encode({ jsonSpec: new Uint8Array([0x7b]), runcOptions: {}, stdinPort: 1, stdoutPort: 2, stderrPort: 3 }).finish()),
    '0a017b' + '1200' + '1801' + '2002' + '2803',
  );
  t.equal(hex(google.rpc.Status.encode({ details: [{}] }).finish()), '1a00', 'Status.details = 3');
  t.equal(hex(google.protobuf.Any.encode({ typeUrl: 'a', value: new Uint8Array([1]) }).finish()), '0a0161' + '120101');
  t.equal(google.protobuf.Empty.encode({}).finish().length, 0);
});

t.test('CreateTaskRequest round-trips with runc options packed in Any', async (t) => {
  const opts = containerd.runc.v1.Options.encode({ binaryName: 'runc', root: '/run/flint/runc', systemdCgroup: false }).finish();
  const req = {
    id: 'c1',
    bundle: '/run/containerd/io.containerd.runtime.v2.task/default/c1',
    rootfs: [{ type: 'overlay', source: 'overlay', options: ['lowerdir=/a', 'upperdir=/b', 'workdir=/c'] }],
    stdin: '/fifo/stdin',
    stdout: '/fifo/stdout',
    terminal: true,
    options: { typeUrl: 'containerd.runc.v1.Options', value: opts },
  };
  const back = containerd.task.v2.CreateTaskRequest.decode(containerd.task.v2.CreateTaskRequest.encode(req).finish());
  t.equal(back.id, 'c1');
  t.equal(back.bundle, req.bundle);
  t.equal(back.rootfs.length, 1);
  t.equal(back.rootfs[0]?.type, 'overlay');
  t.equal(back.rootfs[0]?.target, '');
  t.same(back.rootfs[0]?.options, req.rootfs[0]?.options);
  t.equal(back.stderr, '');
  t.equal(back.terminal, true);
  t.equal(back.options?.typeUrl, 'containerd.runc.v1.Options');
  const o = containerd.runc.v1.Options.decode(back.options?.value ?? new Uint8Array(0));
  t.equal(o.binaryName, 'runc');
  t.equal(o.root, '/run/flint/runc');
  t.equal(o.systemdCgroup, false);
});

t.test('service descriptors', async (t) => {
  const taskMethods = [
    'State', 'Create', 'Start', 'Delete', 'Pids', 'Pause', 'Resume', 'Checkpoint', 'Kill',
    'Exec', 'ResizePty', 'CloseIO', 'Update', 'Wait', 'Stats', 'Connect', 'Shutdown',
  ];
  t.equal(TaskDescriptor.name, 'containerd.task.v2.Task');
  t.same(Object.keys(TaskDescriptor.methods), taskMethods);
  for (const [key, m] of Object.entries(TaskDescriptor.methods)) {
    t.equal(m.name, key);
    t.equal(m.handler, key.charAt(0).toLowerCase() + key.slice(1));
  }
  t.equal(TaskDescriptor.methods.CloseIO.handler, 'closeIO');
  t.equal(TaskDescriptor.methods.Create.requestType, containerd.task.v2.CreateTaskRequest);
  t.equal(TaskDescriptor.methods.Create.responseType, containerd.task.v2.CreateTaskResponse);
  t.equal(TaskDescriptor.methods.Kill.responseType, google.protobuf.Empty);

  t.equal(EventsDescriptor.name, 'containerd.services.events.ttrpc.v1.Events');
  t.same(Object.keys(EventsDescriptor.methods), ['Forward']);
  t.equal(EventsDescriptor.methods.Forward.requestType, containerd.services.events.ttrpc.v1.ForwardRequest);

  t.equal(EventBridgeDescriptor.name, 'flint.vm.v1.EventBridge');
  t.equal(EventBridgeDescriptor.methods.GetEvent.handler, 'getEvent');
  t.equal(EventBridgeDescriptor.methods.GetEvent.requestType, flint.vm.v1.GetEventRequest);
  t.equal(EventBridgeDescriptor.methods.GetEvent.responseType, flint.vm.v1.GetEventResponse);
});

t.test('clients make one call per method with the right descriptor', async (t) => {
  const calls: Array<{ service: string; method: string; request: unknown; options: unknown }> = [];
  const fake = {
    async call(service: string, method: { name: string; responseType: { decode(b: Uint8Array): unknown } }, request: unknown, options?: unknown) {
      calls.push({ service, method: method.name, request, options });
      return method.responseType.decode(new Uint8Array(0));
    },
  };
  const task = new TaskClient(fake as unknown as ConstructorParameters<typeof TaskClient>[0]);
  const signal = new AbortController().signal;
  const wait = await task.wait({ id: 'c1' }, { signal });
  t.equal(wait.exitStatus, 0);
  t.same(calls, [{ service: 'containerd.task.v2.Task', method: 'Wait', request: { id: 'c1' }, options: { signal } }]);
  await task.closeIO({ id: 'c1', stdin: true });
  t.equal(calls[1]?.method, 'CloseIO');

  const bridge = new EventBridgeClient(fake as unknown as ConstructorParameters<typeof EventBridgeClient>[0]);
  const event = await bridge.getEvent({ after: 7 });
  t.equal(Number(event.sequence), 0);
  t.same(calls[2], { service: 'flint.vm.v1.EventBridge', method: 'GetEvent', request: { after: 7 }, options: undefined });
});

t.test('a handler typed by the generated interface serves through the descriptor', async (t) => {
  const forwarded: string[] = [];
  const impl: EventsService = {
    async forward(request) {
      forwarded.push(request.envelope?.topic ?? '');
    },
  };
  const m = EventsDescriptor.methods.Forward;
  const payload = m.requestType.encode({ envelope: { topic: '/tasks/exit', namespace: 'default' } }).finish();
  const ctx: CallContext = { service: EventsDescriptor.name, method: m.name, metadata: new Metadata(), signal: new AbortController().signal, deadline: undefined };
  const result = await impl.forward(containerd.services.events.ttrpc.v1.ForwardRequest.decode(payload), ctx);
  t.same(forwarded, ['/tasks/exit']);
  t.equal(m.responseType.encode(result ?? {}).finish().length, 0, 'Empty encodes to no bytes');
});
