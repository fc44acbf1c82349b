import { FailedPreconditionError, NotFoundError } from '../../errdefs/errors.js';

/** A process's lifecycle state; the names are what errors and logs say. */
export type StateName = 'created' | 'running' | 'paused' | 'stopped' | 'deleted';

export interface Lifecycle<Op extends string> {
  /** The legal next states of each state. */
  readonly transitions: Readonly<Record<StateName, readonly StateName[]>>;
  /** The states each operation may run in. */
  readonly allowed: Readonly<Record<Op, readonly StateName[]>>;
}

/**
 * One process's state, moved only along whitelisted transitions. Every
 * operation asks first, and an illegal one fails with "cannot X <noun> in
 * state Y" (a deleted process is NotFound, as containerd expects), so the
 * rules live in one table per kind of process instead of in every method.
 */
export class StateMachine<Op extends string> {
  private current: StateName = 'created';

  constructor(
    private readonly noun: string,
    private readonly lifecycle: Lifecycle<Op>,
  ) {}

  get state(): StateName {
    return this.current;
  }

  is(...states: StateName[]): boolean {
    return states.includes(this.current);
  }

  assert(op: Op): void {
    if (this.lifecycle.allowed[op].includes(this.current)) return;
    const message = `cannot ${op} ${this.noun} in state ${this.current}`;
    if (this.current === 'deleted') throw new NotFoundError(message);
    throw new FailedPreconditionError(message);
  }

  transition(next: StateName): void {
    if (next === this.current) return;
    if (!this.lifecycle.transitions[this.current].includes(next)) {
      throw new FailedPreconditionError(`${this.noun}: invalid state transition from ${this.current} to ${next}`);
    }
    this.current = next;
  }
}

export type InitOp = 'start' | 'pause' | 'resume' | 'kill' | 'delete' | 'update' | 'exec' | 'checkpoint' | 'resize' | 'closeIO';
export type ExecOp = 'start' | 'kill' | 'delete' | 'resize' | 'closeIO';

export const INIT_LIFECYCLE: Lifecycle<InitOp> = {
  transitions: {
    created: ['running', 'stopped', 'deleted'],
    running: ['paused', 'stopped'],
    paused: ['running', 'stopped'],
    stopped: ['deleted'],
    deleted: [],
  },
  allowed: {
    start: ['created'],
    pause: ['running'],
    resume: ['paused'],
    kill: ['created', 'running', 'paused', 'stopped'],
    delete: ['created', 'stopped'],
    update: ['created', 'running', 'paused'],
    exec: ['created', 'running', 'paused'],
    checkpoint: ['running', 'paused'],
    resize: ['created', 'running', 'paused', 'stopped'],
    closeIO: ['created', 'running', 'paused', 'stopped'],
  },
};

export const EXEC_LIFECYCLE: Lifecycle<ExecOp> = {
  transitions: {
    created: ['running', 'stopped', 'deleted'],
    running: ['stopped'],
    paused: [],
    stopped: ['deleted'],
    deleted: [],
  },
  allowed: {
    start: ['created'],
    kill: ['running', 'stopped'],
    delete: ['created', 'stopped'],
    resize: ['created', 'running', 'stopped'],
    closeIO: ['created', 'running', 'stopped'],
  },
};
