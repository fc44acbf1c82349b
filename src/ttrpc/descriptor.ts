/**
 * What generated code hands the ttrpc server and client: a service's full
 * name and, per method, the protobufjs message types of its request and
 * response. src/generated/services.ts is generated from the .proto files in
 * this shape (scripts/gen-services.mjs); nothing here is written per method.
 */
export interface MessageType<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(data: Uint8Array): T;
}

export interface MethodDescriptor<Req = unknown, Res = unknown> {
  /** The method name on the wire, e.g. "Create". */
  readonly name: string;
  /** The implementation's property name, e.g. "create". */
  readonly handler: string;
  readonly requestType: MessageType<Req>;
  readonly responseType: MessageType<Res>;
}

export interface ServiceDescriptor {
  /** The fully qualified service name on the wire, e.g. "containerd.task.v2.Task". */
  readonly name: string;
  readonly methods: Readonly<Record<string, MethodDescriptor>>;
}
