import t, { type Test } from 'tap';
import { FailedPreconditionError, NotFoundError } from '../src/errdefs/errors.js';
import {
  EXEC_LIFECYCLE,
  INIT_LIFECYCLE,
  StateMachine,
  type ExecOp,
  type InitOp,
  type Lifecycle,
  type StateName,
} from '../src/taskapi/process/state-machine.js';

/**
 * The per-process lifecycles, checked cell by cell against a matrix written
 * out here (not read back from the tables under test): every operation in
 * every state is either allowed or fails with the right class and message.
 */

const ALL_STATES: readonly StateName[] = ['created', 'running', 'paused', 'stopped', 'deleted'];

/** Legal paths from "created" to each state; a state missing here cannot be reached. */
const INIT_PATHS: Readonly<Record<StateName, readonly StateName[]>> = {
  created: [],
  running: ['running'],
  paused: ['running', 'paused'],
  stopped: ['running', 'stopped'],
  deleted: ['running', 'stopped', 'deleted'],
};
const EXEC_PATHS: Readonly<Partial<Record<StateName, readonly StateName[]>>> = {
  created: [],
  running: ['running'],
  stopped: ['running', 'stopped'],
  deleted: ['running', 'stopped', 'deleted'],
};

/** 'ok' where the op may run; otherwise the op is refused. */
type Cell = 'ok' | 'refused';
const o: Cell = 'ok';
const x: Cell = 'refused';

//                                created running paused stopped deleted
const INIT_MATRIX: Readonly<Record<InitOp, readonly Cell[]>> = {
  start:      [o, x, x, x, x],
  pause:      [x, o, x, x, x],
  resume:     [x, x, o, x, x],
  kill:       [o, o, o, o, x],
  delete:     [o, x, x, o, x],
  update:     [o, o, o, x, x],
  exec:       [o, o, o, x, x],
  checkpoint: [x, o, o, x, x],
  resize:     [o, o, o, o, x],
  closeIO:    [o, o, o, o, x],
};

//                                created running paused stopped deleted
const EXEC_MATRIX: Readonly<Record<ExecOp, readonly Cell[]>> = {
  start:      [o, x, x, x, x],
  kill:       [x, o, x, o, x],
  delete:     [o, x, x, o, x],
  resize:     [o, o, x, o, x],
  closeIO:    [o, o, x, o, x],
};

function machineIn<Op extends string>(noun: string, lifecycle: Lifecycle<Op>, path: readonly StateName[]): StateMachine<Op> {
  const machine = new StateMachine(noun, lifecycle);
  for (const next of path) machine.transition(next);
  return machine;
}

function checkMatrix<Op extends string>(
  t: Test,
  noun: string,
  lifecycle: Lifecycle<Op>,
  paths: Readonly<Partial<Record<StateName, readonly StateName[]>>>,
  matrix: Readonly<Record<Op, readonly Cell[]>>,
): void {
  t.same(Object.keys(lifecycle.allowed).sort(), Object.keys(matrix).sort(), 'the matrix covers every operation of the lifecycle');
  for (const [op, cells] of Object.entries(matrix) as [Op, readonly Cell[]][]) {
    ALL_STATES.forEach((state, column) => {
      const path = paths[state];
      if (path === undefined) return;
      const machine = machineIn(noun, lifecycle, path);
      t.equal(machine.state, state, `reached ${state}`);
      if (cells[column] === 'ok') {
        t.doesNotThrow(() => machine.assert(op), `${op} is allowed in ${state}`);
        return;
      }
      const message = `cannot ${op} ${noun} in state ${state}`;
      const Expected = state === 'deleted' ? NotFoundError : FailedPreconditionError;
      let thrown: unknown;
      try {
        machine.assert(op);
      } catch (err) {
        thrown = err;
      }
      t.type(thrown, Expected, `${op} in ${state} is a ${Expected.name}`);
      t.equal((thrown as Error | undefined)?.message, message, `${op} in ${state}: "${message}"`);
      t.equal(machine.state, state, `a refused ${op} leaves the state ${state}`);
    });
  }
}

t.test('init lifecycle: every operation in every state', (t) => {
  checkMatrix(t, 'container c1', INIT_LIFECYCLE, INIT_PATHS, INIT_MATRIX);
  t.end();
});

t.test('exec lifecycle: every operation in every reachable state', (t) => {
  checkMatrix(t, 'exec e1', EXEC_LIFECYCLE, EXEC_PATHS, EXEC_MATRIX);
  t.end();
});

t.test('the example messages containerd users see', (t) => {
  const stopped = machineIn('container c1', INIT_LIFECYCLE, ['running', 'stopped']);
  t.throws(() => stopped.assert('pause'), { name: 'FailedPreconditionError', message: 'cannot pause container c1 in state stopped' });
  const deleted = machineIn('container c1', INIT_LIFECYCLE, ['deleted']);
  t.throws(() => deleted.assert('kill'), { name: 'NotFoundError', message: 'cannot kill container c1 in state deleted' });
  const exec = machineIn('exec e1', EXEC_LIFECYCLE, []);
  t.throws(() => exec.assert('kill'), { name: 'FailedPreconditionError', message: 'cannot kill exec e1 in state created' });
  t.end();
});

/** Every (from, to) pair: legal ones move, illegal ones throw and leave the state alone. */
const INIT_LEGAL: ReadonlySet<string> = new Set([
  'created>running', 'created>stopped', 'created>deleted',
  'running>paused', 'running>stopped',
  'paused>running', 'paused>stopped',
  'stopped>deleted',
]);
const EXEC_LEGAL: ReadonlySet<string> = new Set([
  'created>running', 'created>stopped', 'created>deleted',
  'running>stopped',
  'stopped>deleted',
]);

function checkTransitions<Op extends string>(
  t: Test,
  noun: string,
  lifecycle: Lifecycle<Op>,
  paths: Readonly<Partial<Record<StateName, readonly StateName[]>>>,
  legal: ReadonlySet<string>,
): void {
  for (const from of ALL_STATES) {
    const path = paths[from];
    if (path === undefined) continue;
    for (const to of ALL_STATES) {
      const machine: StateMachine<Op> = machineIn(noun, lifecycle, path);
      if (from === to) {
        t.doesNotThrow(() => machine.transition(to), `${from} -> ${from} is a no-op`);
        t.equal(machine.state, from);
      } else if (legal.has(`${from}>${to}`)) {
        machine.transition(to);
        t.equal(machine.state, to, `${from} -> ${to} is legal`);
      } else {
        t.throws(
          () => machine.transition(to),
          { name: 'FailedPreconditionError', message: `${noun}: invalid state transition from ${from} to ${to}` },
          `${from} -> ${to} is illegal`,
        );
        t.equal(machine.state, from, `a refused ${from} -> ${to} leaves the state ${from}`);
      }
    }
  }
}

t.test('init transitions: legal ones move, illegal ones are refused', (t) => {
  checkTransitions(t, 'container c1', INIT_LIFECYCLE, INIT_PATHS, INIT_LEGAL);
  t.end();
});

t.test('exec transitions: legal ones move, illegal ones are refused', (t) => {
  checkTransitions(t, 'exec e1', EXEC_LIFECYCLE, EXEC_PATHS, EXEC_LEGAL);
  t.test('an exec can never be paused', (t) => {
    for (const path of Object.values(EXEC_PATHS)) {
      const machine = machineIn('exec e1', EXEC_LIFECYCLE, path);
      if (machine.state === 'paused') continue;
      t.throws(() => machine.transition('paused'), FailedPreconditionError, `not from ${machine.state}`);
    }
    t.end();
  });
  t.end();
});

t.test('is() and the initial state', (t) => {
  const machine = new StateMachine('container c1', INIT_LIFECYCLE);
  t.equal(machine.state, 'created');
  t.ok(machine.is('created'));
  t.ok(machine.is('running', 'created'));
  t.notOk(machine.is('running', 'stopped'));
  t.end();
});
