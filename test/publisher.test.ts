import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { containerd, EventsDescriptor, type EventsService } from '../src/generated/index.js';
import { UnavailableError } from '../src/errdefs/errors.js';
import { ForwardingPublisher } from '../src/shim/publisher.js';
import { taskEvents } from '../src/taskapi/events.js';
import { NAMESPACE_KEY } from '../src/ttrpc/metadata.js';
import { Server } from '../src/ttrpc/server.js';

/**
 * ForwardingPublisher against a real ttrpc Events service in this process,
 * standing in for containerd's: one that refuses the first calls, one that
 * is not there yet, one that stalls. Backoff and retry show in what arrives;
 * publish() must return at once whatever the far side does.
 */

const tmp = mkdtempSync(join(tmpdir(), 'flint-pub-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const quiet = pino({ enabled: false });

interface Received {
  readonly namespace: string;
  readonly metadataNamespace: string;
  readonly topic: string;
  readonly containerId: string;
}

/** An Events service on `<tmp>/<name>`; `behave` runs first on every call and may throw or stall. */
async function eventsServer(name: string, behave: (call: number) => Promise<void> | void = () => {}): Promise<{ path: string; received: Received[]; calls: () => number; stop: () => Promise<void> }> {
  const path = join(tmp, name);
  const received: Received[] = [];
  let calls = 0;
  const server = new Server();
  const service: EventsService = {
    async forward(request, ctx) {
      await behave(++calls);
      const envelope = request.envelope!;
      // TaskOOM and TaskStart both carry container_id as field 1.
      received.push({
        namespace: envelope.namespace ?? '',
        metadataNamespace: ctx.metadata.getFirst(NAMESPACE_KEY) ?? '',
        topic: envelope.topic ?? '',
        containerId: containerd.events.TaskOOM.decode(envelope.event?.value ?? new Uint8Array()).containerId,
      });
      return {};
    },
  };
  server.register(EventsDescriptor, service);
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  server.serve(listener);
  return {
    path,
    received,
    calls: () => calls,
    stop: async () => {
      server.destroy();
      await new Promise((resolve) => listener.close(resolve));
    },
  };
}

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await sleep(20);
  return condition();
}

t.test('events arrive in order, with namespace in the envelope and the call metadata', async (t) => {
  const srv = await eventsServer('order.sock');
  t.teardown(srv.stop);
  const publisher = new ForwardingPublisher(srv.path, quiet);
  publisher.publish('ns-a', taskEvents.start('c1', 10));
  publisher.publish('ns-b', taskEvents.oom('c2'));
  publisher.publish('ns-a', taskEvents.start('c3', 11));
  await publisher.close(5_000);
  t.same(srv.received, [
    { namespace: 'ns-a', metadataNamespace: 'ns-a', topic: '/tasks/start', containerId: 'c1' },
    { namespace: 'ns-b', metadataNamespace: 'ns-b', topic: '/tasks/oom', containerId: 'c2' },
    { namespace: 'ns-a', metadataNamespace: 'ns-a', topic: '/tasks/start', containerId: 'c3' },
  ]);
});

t.test('refused calls are retried with backoff: every event arrives once, in order', async (t) => {
  const srv = await eventsServer('flaky.sock', (call) => {
    if (call <= 2) throw new UnavailableError(`refusing call ${call}`);
  });
  t.teardown(srv.stop);
  const publisher = new ForwardingPublisher(srv.path, quiet);
  for (let i = 0; i < 5; i++) publisher.publish('ns', taskEvents.oom(`c${i}`));
  t.ok(await until(() => srv.received.length === 5, 15_000), 'all five arrive after two refusals');
  t.same(srv.received.map((r) => r.containerId), ['c0', 'c1', 'c2', 'c3', 'c4'], 'in order, none twice');
  t.equal(srv.calls(), 7, 'two refused attempts, then one call per event');
  await publisher.close(1_000);
});

t.test('containerd not listening yet: the publisher reconnects when it is', async (t) => {
  const path = join(tmp, 'late.sock');
  const publisher = new ForwardingPublisher(path, quiet);
  publisher.publish('ns', taskEvents.oom('early'));
  await sleep(300);
  const srv = await eventsServer('late.sock');
  t.teardown(srv.stop);
  t.ok(await until(() => srv.received.length === 1, 15_000), 'the early event arrives once the service is up');
  t.equal(srv.received[0]?.containerId, 'early');
  await publisher.close(1_000);
});

t.test('a stalled containerd never blocks publish(), and the queue stays bounded', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const srv = await eventsServer('stalled.sock', () => released);
  t.teardown(srv.stop);
  const publisher = new ForwardingPublisher(srv.path, quiet);
  publisher.publish('ns', taskEvents.oom('first'));
  t.ok(await until(() => srv.calls() === 1, 5_000), 'the first forward is stuck in the service');
  let returned = 0;
  for (let i = 0; i < 3_000; i++) {
    publisher.publish('ns', taskEvents.oom(`e${i}`));
    returned++;
  }
  t.equal(returned, 3_000, 'every publish() returned while the service stalls');
  await nextTurn();
  t.equal(srv.received.length, 0, 'nothing was delivered meanwhile');
  release();
  await publisher.close(30_000);
  t.equal(srv.received[0]?.containerId, 'first', 'the stalled event goes out first once the service answers');
  t.equal(srv.received.length, 2048, 'the queue held 2048 events (the one in flight included); the rest were dropped, not buffered without bound');
  t.same(srv.received.slice(1, 4).map((r) => r.containerId), ['e0', 'e1', 'e2'], 'the oldest events are kept, in order');
});
