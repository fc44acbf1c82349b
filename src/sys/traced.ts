import type { Logger } from 'pino';

/**
 * Wraps a service implementation so each call is logged at debug level with
 * its id, duration and outcome: the timestamps that show where a slow or
 * stuck call spends its time. Logging off, the wrapper costs one check.
 */
export function traced<T extends object>(service: T, log: Logger, name: string): T {
  if (!log.isLevelEnabled('debug')) return service;
  return new Proxy(service, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return async (request: { id?: string; execId?: string }, ...rest: unknown[]) => {
        const started = performance.now();
        const fields = { call: `${name}.${String(property)}`, id: request?.id, execId: request?.execId || undefined };
        log.debug(fields, 'call');
        try {
          const result = await (value as (...args: unknown[]) => unknown).call(target, request, ...rest);
          log.debug({ ...fields, ms: Math.round(performance.now() - started) }, 'done');
          return result;
        } catch (err) {
          log.debug({ ...fields, ms: Math.round(performance.now() - started), err }, 'failed');
          throw err;
        }
      };
    },
  });
}
