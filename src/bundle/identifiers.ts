import { InvalidArgumentError } from '../errdefs/errors.js';

/** Longest identifier containerd accepts. */
export const MAX_ID_LENGTH = 76;

/**
 * containerd's identifier grammar: alphanumeric runs joined by single
 * '.', '_' or '-'. Such ids are safe as one path component.
 */
export const ID_PATTERN = /^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$/;

/**
 * Throws InvalidArgumentError unless `id` is a valid containerd identifier,
 * with containerd's wording so messages match across runtimes.
 */
export function validateId(id: string): void {
  if (id.length === 0) {
    throw new InvalidArgumentError('identifier must not be empty');
  }
  if (id.length > MAX_ID_LENGTH) {
    throw new InvalidArgumentError(
      `identifier ${JSON.stringify(id)} greater than maximum length (${MAX_ID_LENGTH} characters)`,
    );
  }
  if (!ID_PATTERN.test(id)) {
    throw new InvalidArgumentError(`identifier ${JSON.stringify(id)} must match ${ID_PATTERN.source}`);
  }
}
