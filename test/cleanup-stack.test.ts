import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { CleanupStack } from '../src/sys/cleanup-stack.js';

t.test('steps run last-in-first-out, async steps awaited in turn', async (t) => {
  const stack = new CleanupStack();
  const order: string[] = [];
  stack.push('a', () => void order.push('a'));
  stack.push('b', async () => {
    await sleep(20);
    order.push('b');
  });
  stack.push('c', () => void order.push('c'));
  t.equal(stack.size, 3);
  t.equal(await stack.run(), undefined, 'no failure, no error');
  t.same(order, ['c', 'b', 'a']);
  t.equal(stack.size, 0, 'empty afterwards');
});

t.test('every step runs even when some throw; failures come back as one AggregateError', async (t) => {
  const stack = new CleanupStack();
  const ran: string[] = [];
  const boomSync = new Error('sync boom');
  const boomAsync = new Error('async boom');
  stack.push('first', () => void ran.push('first'));
  stack.push('mounts', () => {
    ran.push('mounts');
    throw boomSync;
  });
  stack.push('fifos', async () => {
    ran.push('fifos');
    throw boomAsync;
  });
  stack.push('last', () => void ran.push('last'));
  const failure = await stack.run();
  t.same(ran, ['last', 'fifos', 'mounts', 'first'], 'all four ran, LIFO');
  t.type(failure, AggregateError);
  t.equal(failure!.errors.length, 2);
  const [fifos, mounts] = failure!.errors as Error[];
  t.equal(fifos!.message, 'cleanup fifos: async boom', 'each failure names its step');
  t.equal(fifos!.cause, boomAsync, 'and keeps the original as cause');
  t.equal(mounts!.message, 'cleanup mounts: sync boom');
  t.equal(mounts!.cause, boomSync);
  t.match(failure!.message, /cleanup fifos: async boom; cleanup mounts: sync boom/);
  t.equal(stack.size, 0);
});

t.test('a non-Error throw is reported too', async (t) => {
  const stack = new CleanupStack();
  stack.push('odd', () => {
    throw 'a string';
  });
  const failure = await stack.run();
  t.equal((failure!.errors[0] as Error).message, 'cleanup odd: a string');
});

t.test('running twice is harmless: no step runs again', async (t) => {
  const stack = new CleanupStack();
  let count = 0;
  stack.push('once', () => void count++);
  await stack.run();
  t.equal(await stack.run(), undefined);
  t.equal(count, 1);
});

t.test('concurrent runs do not run a step twice', async (t) => {
  const stack = new CleanupStack();
  const ran: string[] = [];
  for (const name of ['a', 'b', 'c']) {
    stack.push(name, async () => {
      await sleep(5);
      ran.push(name);
    });
  }
  await Promise.all([stack.run(), stack.run()]);
  t.same([...ran].sort(), ['a', 'b', 'c'], 'each step exactly once');
});

t.test('unwind runs the stack then rethrows the original error', async (t) => {
  const stack = new CleanupStack();
  const ran: string[] = [];
  stack.push('x', () => void ran.push('x'));
  const original = new Error('create failed');
  await t.rejects(stack.unwind(original), original);
  try {
    await new CleanupStack().unwind(original);
  } catch (err) {
    t.equal(err, original, 'the very same object');
  }
  t.same(ran, ['x']);
  t.equal(original.cause, undefined, 'no cleanup failure, no cause added');
});

t.test('unwind attaches cleanup failures as the cause', async (t) => {
  const stack = new CleanupStack();
  stack.push('rootfs', () => {
    throw new Error('umount: busy');
  });
  const original = new Error('runc create failed');
  let thrown: unknown;
  try {
    await stack.unwind(original);
  } catch (err) {
    thrown = err;
  }
  t.equal(thrown, original, 'the original error, not the cleanup failure');
  t.type(original.cause, AggregateError);
  t.equal(((original.cause as AggregateError).errors[0] as Error).message, 'cleanup rootfs: umount: busy');
});

t.test('unwind keeps a cause the error already had', async (t) => {
  const stack = new CleanupStack();
  stack.push('s', () => {
    throw new Error('cleanup failed');
  });
  const root = new Error('root cause');
  const original = new Error('wrapped', { cause: root });
  await t.rejects(stack.unwind(original), original);
  t.equal(original.cause, root);
});

t.test('unwind rethrows non-Error values unchanged', async (t) => {
  const stack = new CleanupStack();
  stack.push('s', () => {
    throw new Error('cleanup failed');
  });
  let thrown: unknown;
  try {
    await stack.unwind('plain');
  } catch (err) {
    thrown = err;
  }
  t.equal(thrown, 'plain');
  t.equal(stack.size, 0);
});

t.test('adopt moves steps over, keeping their order', async (t) => {
  const outer = new CleanupStack();
  const inner = new CleanupStack();
  const order: string[] = [];
  outer.push('outer', () => void order.push('outer'));
  inner.push('inner-1', () => void order.push('inner-1'));
  inner.push('inner-2', () => void order.push('inner-2'));
  outer.adopt(inner);
  t.equal(inner.size, 0, 'the adopted stack is emptied');
  t.equal(outer.size, 3);
  await inner.run();
  t.same(order, [], 'running the emptied stack does nothing');
  await outer.run();
  t.same(order, ['inner-2', 'inner-1', 'outer']);
});
