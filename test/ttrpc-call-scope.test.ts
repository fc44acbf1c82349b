import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { CallScope } from '../src/ttrpc/call-scope.js';
import { Code } from '../src/ttrpc/codes.js';
import { RpcError } from '../src/ttrpc/errors.js';

t.test('no deadline: the signal stays live until abort()', async (t) => {
  const scope = new CallScope(undefined);
  t.equal(scope.signal.aborted, false);
  t.equal(scope.signal, scope.signal, 'one signal per call');
  const reason = new Error('connection closed');
  scope.abort(reason);
  t.equal(scope.signal.aborted, true);
  t.equal(scope.signal.reason, reason);
  scope.abort(new Error('second'));
  t.equal(scope.signal.reason, reason, 'the first reason wins');
  scope.dispose();
});

t.test('a signal first read after abort() is already aborted, with the reason', async (t) => {
  const scope = new CallScope(Date.now() + 60_000);
  const reason = new Error('connection closed');
  scope.abort(reason);
  t.equal(scope.signal.aborted, true);
  t.equal(scope.signal.reason, reason);
  scope.dispose();
});

t.test('a deadline already past gives an aborted signal with DeadlineExceeded', async (t) => {
  const scope = new CallScope(Date.now() - 1);
  t.equal(scope.signal.aborted, true);
  const reason: unknown = scope.signal.reason;
  t.type(reason, RpcError);
  t.equal((reason as RpcError).code, Code.DeadlineExceeded);
  t.equal((reason as RpcError).message, 'context deadline exceeded');
  scope.dispose();
});

t.test('the deadline aborts a signal that a handler holds', async (t) => {
  const scope = new CallScope(Date.now() + 30);
  const signal = scope.signal;
  t.equal(signal.aborted, false);
  const aborted = new Promise<unknown>((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }));
  // The scope's timer is unref'd (a live connection holds the loop open);
  // here a ref'd one stands in for the connection.
  const holdLoop = setTimeout(() => t.fail('the deadline never fired'), 5_000);
  const reason = await aborted;
  clearTimeout(holdLoop);
  t.equal((reason as RpcError).code, Code.DeadlineExceeded);
  scope.dispose();
});

t.test('dispose() cancels the deadline timer', async (t) => {
  const scope = new CallScope(Date.now() + 30);
  const signal = scope.signal;
  scope.dispose();
  await sleep(80);
  t.equal(signal.aborted, false, 'no abort fired after the call ended');
});

t.test('a signal first read after dispose() arms no timer', async (t) => {
  const scope = new CallScope(Date.now() + 30);
  scope.dispose();
  const signal = scope.signal;
  await sleep(80);
  t.equal(signal.aborted, false);
});

t.test('a deadline beyond setTimeout range is treated as none', async (t) => {
  const scope = new CallScope(Date.now() + 2 ** 32);
  const signal = scope.signal;
  await sleep(20);
  t.equal(signal.aborted, false, 'an overflowing timer would have fired at once');
  scope.dispose();
});
