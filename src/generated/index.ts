/**
 * Entry point for the protobuf types and ttrpc service bindings generated from
 * proto/ (`make proto`). 64-bit integers decode as plain numbers: the
 * generated code loads its runtime from ./protobuf-runtime.js, which turns
 * Long support off before any message class exists. Hand-written.
 */
export { containerd, flint, google, io, runtimeoptions, ttrpc } from './protos.js';
export * from './services.js';
