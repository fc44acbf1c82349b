/**
 * Undo steps registered while something is being built (mounts, FIFOs,
 * runc state, processes). On failure or teardown they run last-in-first-out,
 * every step runs even when an earlier one fails, and the stack is empty
 * afterwards so running it twice is harmless.
 */
export type UndoStep = () => void | Promise<void>;

export class CleanupStack {
  private readonly steps: { name: string; undo: UndoStep }[] = [];

  push(name: string, undo: UndoStep): void {
    this.steps.push({ name, undo });
  }

  get size(): number {
    return this.steps.length;
  }

  /** Moves every step of `other` onto this stack, keeping their order. */
  adopt(other: CleanupStack): void {
    this.steps.push(...other.steps.splice(0));
  }

  /** Runs all steps LIFO; returns one AggregateError if any failed. */
  async run(): Promise<AggregateError | undefined> {
    const errors: Error[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.undo();
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        errors.push(new Error(`cleanup ${step.name}: ${reason}`, { cause: err }));
      }
    }
    return errors.length > 0 ? new AggregateError(errors, errors.map((e) => e.message).join('; ')) : undefined;
  }

  /** Runs the stack after `err`, then rethrows `err` (cleanup failures are attached as its cause). */
  async unwind(err: unknown): Promise<never> {
    const failure = await this.run();
    if (failure && err instanceof Error && err.cause === undefined) {
      (err as { cause?: unknown }).cause = failure;
    }
    throw err;
  }
}
