import { Code } from '../ttrpc/codes.js';

/**
 * Domain errors. Code below the service edge throws these; the edge turns
 * them into a ttrpc status once (see status.ts), and a client turns a status
 * back into the same class, so `instanceof NotFoundError` works on both ends.
 */
export abstract class FlintError extends Error {
  abstract readonly code: Code;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends FlintError {
  readonly code = Code.InvalidArgument;
}
export class NotFoundError extends FlintError {
  readonly code = Code.NotFound;
}
export class AlreadyExistsError extends FlintError {
  readonly code = Code.AlreadyExists;
}
export class FailedPreconditionError extends FlintError {
  readonly code = Code.FailedPrecondition;
}
export class UnimplementedError extends FlintError {
  readonly code = Code.Unimplemented;
}
export class UnavailableError extends FlintError {
  readonly code = Code.Unavailable;
}
export class DeadlineExceededError extends FlintError {
  readonly code = Code.DeadlineExceeded;
}
export class CanceledError extends FlintError {
  readonly code = Code.Canceled;
}
export class InternalError extends FlintError {
  readonly code = Code.Internal;
}
export class UnknownError extends FlintError {
  readonly code = Code.Unknown;
}

const BY_CODE: ReadonlyMap<Code, new (message: string) => FlintError> = new Map<Code, new (message: string) => FlintError>([
  [Code.InvalidArgument, InvalidArgumentError],
  [Code.NotFound, NotFoundError],
  [Code.AlreadyExists, AlreadyExistsError],
  [Code.FailedPrecondition, FailedPreconditionError],
  [Code.Unimplemented, UnimplementedError],
  [Code.Unavailable, UnavailableError],
  [Code.DeadlineExceeded, DeadlineExceededError],
  [Code.Canceled, CanceledError],
  [Code.Internal, InternalError],
]);

/** The domain error class for a status code; Unknown for codes with no class. */
export function errorForCode(code: Code, message: string): FlintError {
  const Ctor = BY_CODE.get(code) ?? UnknownError;
  return new Ctor(message);
}
