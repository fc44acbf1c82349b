import { ttrpc } from '../generated/index.js';
import type { Code } from './codes.js';
import type { KeyValue } from './metadata.js';
import type { Status } from './status.js';

/**
 * The ttrpc envelope (ttrpc.Request / ttrpc.Response) as plain data. The
 * protobuf work is done by the generated code; this file only adapts it, so
 * the rest of the module never sees protobufjs types.
 */
export interface RequestEnvelope {
  readonly service: string;
  readonly method: string;
  readonly payload: Uint8Array;
  /** Relative deadline in nanoseconds; 0 means none. */
  readonly timeoutNano: number;
  readonly metadata: readonly KeyValue[];
}

export interface ResponseEnvelope {
  /** Absent on success, as Go ttrpc sends it. */
  readonly status?: Status;
  readonly payload: Uint8Array;
}

const EMPTY = new Uint8Array(0);

function int64ToNumber(value: number | { toNumber(): number } | null | undefined): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

export function encodeRequest(request: RequestEnvelope): Uint8Array {
  // Zero values are left unset so the bytes match what Go ttrpc sends.
  const message: ttrpc.Request.$Properties = { service: request.service, method: request.method };
  if (request.payload.length > 0) message.payload = request.payload;
  if (request.timeoutNano !== 0) message.timeoutNano = request.timeoutNano;
  if (request.metadata.length > 0) message.metadata = request.metadata.map(({ key, value }) => ({ key, value }));
  return ttrpc.Request.encode(message).finish();
}

/** Throws when `data` is not a valid ttrpc.Request. */
export function decodeRequest(data: Uint8Array): RequestEnvelope {
  const m = ttrpc.Request.decode(data);
  return {
    service: m.service ?? '',
    method: m.method ?? '',
    payload: m.payload ?? EMPTY,
    timeoutNano: int64ToNumber(m.timeoutNano),
    metadata: (m.metadata ?? []).map((kv) => ({ key: kv.key ?? '', value: kv.value ?? '' })),
  };
}

export function encodeResponse(response: ResponseEnvelope): Uint8Array {
  const message: ttrpc.Response.$Properties = {};
  if (response.status !== undefined) message.status = { code: response.status.code, message: response.status.message };
  if (response.payload.length > 0) message.payload = response.payload;
  return ttrpc.Response.encode(message).finish();
}

/** Throws when `data` is not a valid ttrpc.Response. */
export function decodeResponse(data: Uint8Array): ResponseEnvelope {
  const m = ttrpc.Response.decode(data);
  const payload = m.payload ?? EMPTY;
  if (m.status === null || m.status === undefined) return { payload };
  return { status: { code: (m.status.code ?? 0) as Code, message: m.status.message ?? '' }, payload };
}
