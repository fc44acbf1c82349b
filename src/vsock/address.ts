import { isAbsolute } from 'node:path';

import { InvalidArgumentError } from '../errdefs/errors.js';

/** Lowest usable vsock port. */
export const MIN_VSOCK_PORT = 1;
/** Highest usable vsock port: 2^32-1 is VMADDR_PORT_ANY. */
export const MAX_VSOCK_PORT = 0xffff_fffe;
/** Highest CID one can dial: 2^32-1 is VMADDR_CID_ANY. */
export const MAX_VSOCK_CID = 0xffff_fffe;
/** sun_path is 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

const VSOCK_SCHEME = 'vsock://';
const HYBRID_SCHEME = 'hvsock://';
const FORMS = 'vsock://CID:PORT, vsock://:PORT, hvsock://PATH:PORT or hvsock://PATH';
const DECIMAL = /^[0-9]+$/;

/** Dial a guest port over AF_VSOCK: `vsock://CID:PORT`. */
export interface VsockDialAddress {
  readonly kind: 'vsock-dial';
  readonly cid: number;
  readonly port: number;
}

/** Listen on a port of every local CID: `vsock://:PORT`. */
export interface VsockListenAddress {
  readonly kind: 'vsock-listen';
  readonly port: number;
}

/** Dial a guest port through a hybrid vsock unix socket: `hvsock://PATH:PORT`. */
export interface HybridDialAddress {
  readonly kind: 'hvsock-dial';
  readonly path: string;
  readonly port: number;
}

/** Serve the hybrid protocol on a unix socket: `hvsock://PATH`. */
export interface HybridListenAddress {
  readonly kind: 'hvsock-listen';
  readonly path: string;
}

export type DialAddress = VsockDialAddress | HybridDialAddress;
export type ListenAddress = VsockListenAddress | HybridListenAddress;
export type AgentAddress = DialAddress | ListenAddress;

/** Parses any of the four address forms; throws InvalidArgumentError naming the address and the fault. */
export function parseAgentAddress(address: string): AgentAddress {
  if (address.startsWith(VSOCK_SCHEME)) return parseVsock(address, address.slice(VSOCK_SCHEME.length));
  if (address.startsWith(HYBRID_SCHEME)) return parseHybrid(address, address.slice(HYBRID_SCHEME.length));
  throw invalid(address, `unknown scheme; expected ${FORMS}`);
}

/** Parses an address the host side dials: vsock://CID:PORT or hvsock://PATH:PORT. */
export function parseDialAddress(address: string): DialAddress {
  const parsed = parseAgentAddress(address);
  if (parsed.kind === 'vsock-dial' || parsed.kind === 'hvsock-dial') return parsed;
  throw invalid(address, 'is a listen address; dial addresses are vsock://CID:PORT or hvsock://PATH:PORT');
}

/** Parses an address the agent listens on: vsock://:PORT or hvsock://PATH. */
export function parseListenAddress(address: string): ListenAddress {
  const parsed = parseAgentAddress(address);
  if (parsed.kind === 'vsock-listen' || parsed.kind === 'hvsock-listen') return parsed;
  throw invalid(address, 'is a dial address; listen addresses are vsock://:PORT or hvsock://PATH');
}

/** The string form parseAgentAddress reads back to an equal value. */
export function formatAgentAddress(address: AgentAddress): string {
  switch (address.kind) {
    case 'vsock-dial':
      return `${VSOCK_SCHEME}${address.cid}:${address.port}`;
    case 'vsock-listen':
      return `${VSOCK_SCHEME}:${address.port}`;
    case 'hvsock-dial':
      return `${HYBRID_SCHEME}${address.path}:${address.port}`;
    case 'hvsock-listen':
      return `${HYBRID_SCHEME}${address.path}`;
  }
}

/** Checks a port number from code (not text); throws InvalidArgumentError when out of 1..2^32-2. */
export function checkVsockPort(port: number, context: string): number {
  if (!Number.isInteger(port) || port < MIN_VSOCK_PORT || port > MAX_VSOCK_PORT) {
    throw new InvalidArgumentError(`${context}: port ${port} out of range ${MIN_VSOCK_PORT}..${MAX_VSOCK_PORT}`);
  }
  return port;
}

function parseVsock(address: string, rest: string): VsockDialAddress | VsockListenAddress {
  const colon = rest.lastIndexOf(':');
  if (colon < 0) throw invalid(address, 'missing port (expected vsock://CID:PORT or vsock://:PORT)');
  const port = parsePort(address, rest.slice(colon + 1));
  const cidText = rest.slice(0, colon);
  if (cidText === '') return { kind: 'vsock-listen', port };
  if (!DECIMAL.test(cidText)) throw invalid(address, `CID ${JSON.stringify(cidText)} is not a decimal number`);
  const cid = Number(cidText);
  if (cid > MAX_VSOCK_CID) throw invalid(address, `CID ${cidText} out of range 0..${MAX_VSOCK_CID}`);
  return { kind: 'vsock-dial', cid, port };
}

function parseHybrid(address: string, rest: string): HybridDialAddress | HybridListenAddress {
  // Only the file name may carry the ":PORT" suffix, so directories may contain colons.
  const nameStart = rest.lastIndexOf('/') + 1;
  const colon = rest.indexOf(':', nameStart);
  const path = colon < 0 ? rest : rest.slice(0, colon);
  checkSocketPath(address, path);
  if (colon < 0) return { kind: 'hvsock-listen', path };
  return { kind: 'hvsock-dial', path, port: parsePort(address, rest.slice(colon + 1)) };
}

function checkSocketPath(address: string, path: string): void {
  if (path === '') throw invalid(address, 'missing socket path (expected hvsock://PATH or hvsock://PATH:PORT)');
  if (!isAbsolute(path)) throw invalid(address, `socket path ${JSON.stringify(path)} is relative; it must be absolute`);
  if (path.endsWith('/')) throw invalid(address, `socket path ${JSON.stringify(path)} names a directory, not a socket file`);
  if (path.includes('\0')) throw invalid(address, 'socket path contains a NUL byte');
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw invalid(address, `socket path is ${bytes} bytes, longer than sun_path allows (${MAX_SOCKET_PATH_BYTES})`);
  }
}

function parsePort(address: string, text: string): number {
  if (text === '') throw invalid(address, 'missing port after ":"');
  if (!DECIMAL.test(text)) throw invalid(address, `port ${JSON.stringify(text)} is not a decimal number`);
  const port = Number(text);
  if (port < MIN_VSOCK_PORT || port > MAX_VSOCK_PORT) {
    throw invalid(address, `port ${text} out of range ${MIN_VSOCK_PORT}..${MAX_VSOCK_PORT}`);
  }
  return port;
}

function invalid(address: string, problem: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid agent address ${JSON.stringify(address)}: ${problem}`);
}
