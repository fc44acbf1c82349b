import { Code } from './codes.js';
import type { CallContext } from './context.js';
import type { MethodDescriptor, ServiceDescriptor } from './descriptor.js';
import { statusFromError, type Status } from './status.js';

/** A unary handler: the decoded request in, the response message (or a promise of it) out. */
export type UnaryHandler<Req = unknown, Res = unknown> = (request: Req, ctx: CallContext) => Res | Promise<Res>;

/**
 * What a service implementation looks like to the server: an object with a
 * handler under each method's `handler` name. Generated code narrows this.
 */
export type ServiceImplementation = object;

interface RegisteredMethod {
  readonly descriptor: MethodDescriptor;
  readonly impl: object;
  readonly handler: (this: object, request: unknown, ctx: CallContext) => unknown;
}

/** The outcome of one dispatch: a response payload or an error status. */
export type CallResult = { readonly payload: Uint8Array; readonly status?: undefined } | { readonly status: Status };

function fail(code: Code, message: string): CallResult {
  return { status: { code, message } };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The server's registry of services and the per-call dispatch. */
export class ServiceSet {
  private readonly services = new Map<string, Map<string, RegisteredMethod>>();

  /**
   * Adds a service. A method whose handler is missing from `impl` is left
   * out, so calls to it get Unimplemented like any unknown method.
   */
  register(descriptor: ServiceDescriptor, impl: ServiceImplementation): void {
    if (this.services.has(descriptor.name)) throw new Error(`ttrpc: duplicate service ${descriptor.name} registered`);
    const methods = new Map<string, RegisteredMethod>();
    for (const method of Object.values(descriptor.methods)) {
      const handler = (impl as Record<string, unknown>)[method.handler];
      if (typeof handler !== 'function') continue;
      methods.set(method.name, { descriptor: method, impl, handler: handler as RegisteredMethod['handler'] });
    }
    this.services.set(descriptor.name, methods);
  }

  /** Decodes the payload, runs the handler and encodes its result; never throws. */
  async call(service: string, method: string, payload: Uint8Array, ctx: CallContext): Promise<CallResult> {
    const methods = this.services.get(service);
    if (!methods) return fail(Code.Unimplemented, `service ${service}`);
    const registered = methods.get(method);
    if (!registered) return fail(Code.Unimplemented, `method ${method}`);
    const { descriptor } = registered;

    let request: unknown;
    try {
      request = descriptor.requestType.decode(payload);
    } catch (err) {
      return fail(Code.Internal, `ttrpc: error unmarshalling payload: ${errorText(err)}`);
    }

    let response: unknown;
    try {
      response = await registered.handler.call(registered.impl, request, ctx);
    } catch (err) {
      return { status: statusFromError(err) };
    }

    try {
      // A handler of an Empty-returning method may simply return nothing.
      return { payload: descriptor.responseType.encode(response ?? {}).finish() };
    } catch (err) {
      return fail(Code.Internal, `ttrpc: error marshaling payload: ${errorText(err)}`);
    }
  }
}
