import t from 'tap';
import { NotFoundError } from '../src/errdefs/errors.js';
import { Code } from '../src/ttrpc/codes.js';
import { ClosedError, errorFromStatus, normalizeCloseError, RpcError } from '../src/ttrpc/errors.js';
import { Metadata, NAMESPACE_KEY } from '../src/ttrpc/metadata.js';
import { oversizedStatus, statusFromError } from '../src/ttrpc/status.js';

function errno(code: string, message = code): Error {
  return Object.assign(new Error(message), { code, errno: -1 });
}

t.test('statusFromError', async (t) => {
  const abortedByDeadline = new DOMException('aborted', 'AbortError');
  Object.defineProperty(abortedByDeadline, 'cause', { value: new RpcError(Code.DeadlineExceeded, 'context deadline exceeded') });
  const table: Array<[string, unknown, Code, string]> = [
    ['domain error keeps its code', new NotFoundError('container x: not found'), Code.NotFound, 'container x: not found'],
    ['plain object with a code', { code: 9, message: 'not running' }, Code.FailedPrecondition, 'not running'],
    ['RpcError keeps its code', new RpcError(Code.Unavailable, 'down'), Code.Unavailable, 'down'],
    ['thrown OK is a bug, so Unknown', { code: 0, message: 'ok?' }, Code.Unknown, 'ok?'],
    ['code out of range', { code: 42, message: 'm' }, Code.Unknown, 'm'],
    ['ENOENT', errno('ENOENT'), Code.NotFound, 'ENOENT'],
    ['EEXIST', errno('EEXIST'), Code.AlreadyExists, 'EEXIST'],
    ['ENOTEMPTY', errno('ENOTEMPTY'), Code.AlreadyExists, 'ENOTEMPTY'],
    ['EACCES', errno('EACCES'), Code.PermissionDenied, 'EACCES'],
    ['EPERM', errno('EPERM'), Code.PermissionDenied, 'EPERM'],
    ['EPIPE', errno('EPIPE'), Code.FailedPrecondition, 'EPIPE'],
    ['EOF', errno('EOF'), Code.OutOfRange, 'EOF'],
    ['other errno', errno('EIO'), Code.Unknown, 'EIO'],
    ['AbortError', new DOMException('This operation was aborted', 'AbortError'), Code.Canceled, 'This operation was aborted'],
    ['AbortError caused by a deadline', abortedByDeadline, Code.DeadlineExceeded, 'aborted'],
    ['TimeoutError', new DOMException('timed out', 'TimeoutError'), Code.DeadlineExceeded, 'timed out'],
    ['plain Error', new Error('boom'), Code.Unknown, 'boom'],
    ['a string', 'just text', Code.Unknown, 'just text'],
    ['ClosedError', new ClosedError(), Code.Unavailable, 'ttrpc: closed'],
  ];
  for (const [name, err, code, message] of table) t.same(statusFromError(err), { code, message }, name);
});

t.test('errorFromStatus and oversizedStatus', async (t) => {
  const err = errorFromStatus({ code: Code.NotFound, message: 'nope' }, new Error('here').stack);
  t.type(err, RpcError);
  t.equal(err.code, Code.NotFound);
  t.equal(err.codeName, 'NotFound');
  t.match(err.stack, /^RpcError: nope\n\s+at /);
  t.same(oversizedStatus(5 << 20), { code: Code.ResourceExhausted, message: 'message length 5242880 exceed maximum message size of 4194304' });
});

t.test('normalizeCloseError', async (t) => {
  for (const code of ['EPIPE', 'ECONNRESET', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_PREMATURE_CLOSE']) {
    const err = normalizeCloseError(errno(code));
    t.type(err, ClosedError, code);
    t.equal(err.message, 'ttrpc: closed');
  }
  t.type(normalizeCloseError(undefined), ClosedError, 'a plain close');
  const closed = new ClosedError();
  t.equal(normalizeCloseError(closed), closed);
  const other = errno('EIO');
  t.equal(normalizeCloseError(other), other, 'other errors pass through');
  t.type(normalizeCloseError('text'), Error);
});

t.test('Metadata', async (t) => {
  const md = new Metadata({ [NAMESPACE_KEY]: 'default', Multi: ['a', 'b'] });
  t.same(md.get('MULTI'), ['a', 'b'], 'keys are case-insensitive');
  t.equal(md.getFirst(NAMESPACE_KEY), 'default');
  t.same(md.get('missing'), []);
  md.append('multi', 'c').set('single', 'x');
  t.same(md.toKeyValues(), [
    { key: NAMESPACE_KEY, value: 'default' },
    { key: 'multi', value: 'a' },
    { key: 'multi', value: 'b' },
    { key: 'multi', value: 'c' },
    { key: 'single', value: 'x' },
  ]);
  const back = Metadata.fromKeyValues(md.toKeyValues());
  t.same(back.toJSON(), md.toJSON(), 'KeyValue round trip');
  const merged = md.merge(new Metadata({ multi: 'z' }));
  t.same(merged.get('multi'), ['z'], 'merge replaces per key');
  t.same(md.get('multi'), ['a', 'b', 'c'], 'merge leaves the original alone');
  md.set('single');
  t.notOk(md.has('single'), 'set() with no values deletes');
  t.equal(md.size, 2);
});
