import { validateId } from '../bundle/identifiers.js';

/**
 * The key of one task or exec on the agent: base64url of "taskID/execID",
 * taken only after both ids are validated, so it is a safe file name and
 * unique per process.
 */
export function taskExecId(taskId: string, execId: string): string {
  validateId(taskId);
  if (execId) validateId(execId);
  return Buffer.from(`${taskId}/${execId}`).toString('base64url');
}
