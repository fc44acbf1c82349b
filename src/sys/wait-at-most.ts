/**
 * Waits for `promise` but no longer than `timeoutMs`: draining output or
 * flushing events must end even when a peer never lets go. Never rejects.
 */
export async function waitAtMost(promise: Promise<unknown>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
  await Promise.race([promise.catch(() => {}), timeout]);
  clearTimeout(timer);
}
