/** flint's ttrpc: framing, client, server and status handling (see PROTOCOL.md). */
export {
  encodeFrame,
  FrameDecoder,
  MESSAGE_HEADER_LENGTH,
  MESSAGE_LENGTH_MAX,
  FrameType,
  type Frame,
  type MessageFrame,
  type OversizedFrame,
} from './channel.js';
export { Client, type ClientOptions } from './client.js';
export { decodeRequest, decodeResponse, encodeRequest, encodeResponse, type RequestEnvelope, type ResponseEnvelope } from './codec.js';
export { Code, isCode } from './codes.js';
export type { CallContext, CallOptions } from './context.js';
export type { MessageType, MethodDescriptor, ServiceDescriptor } from './descriptor.js';
export { ClosedError, errorFromStatus, isCloseError, normalizeCloseError, ProtocolError, RpcError } from './errors.js';
export { Metadata, NAMESPACE_KEY, type KeyValue, type MetadataInit } from './metadata.js';
export { Server, type ConnectionSource, type Handshake, type ServerOptions } from './server.js';
export type { ServiceImplementation, UnaryHandler } from './services.js';
export { oversizedStatus, statusFromError, type Status } from './status.js';
export { requireSameUser, requireUidGid, socketFd, type PeerCredentials, type PeerCredGetter } from './unix-creds.js';
