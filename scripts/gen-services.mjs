#!/usr/bin/env node
// Writes src/generated/services.ts from the services in proto/: per service a
// handler interface (<Name>Service), a ttrpc ServiceDescriptor
// (<Name>Descriptor) and a typed client (<Name>Client). Run by
// scripts/gen-proto.sh; uses full protobufjs reflection at generation time
// only. Message types come from the static module pbjs writes next to it.
import { readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const PROTO_DIR = join(REPO, 'proto');
const OUT_FILE = join(REPO, 'src', 'generated', 'services.ts');

// Our own google/protobuf/*.proto live in proto/; without this protobufjs
// would substitute its bundled copies for them.
for (const name of Object.keys(protobuf.common)) {
  if (name.startsWith('google/protobuf/')) delete protobuf.common[name];
}

// The CRI API the integration test speaks to containerd (see gen-proto.sh).
const SKIPPED_DIRS = new Set([join(PROTO_DIR, 'cri')]);

function protoFiles(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const path = join(dir, e.name);
      if (e.isDirectory()) return SKIPPED_DIRS.has(path) ? [] : protoFiles(path);
      return e.name.endsWith('.proto') ? [path] : [];
    })
    .sort();
}

function loadRoot() {
  const root = new protobuf.Root();
  // Imports are written relative to proto/.
  root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : join(PROTO_DIR, target));
  root.loadSync(protoFiles(PROTO_DIR).map((f) => relative(PROTO_DIR, f)), { alternateCommentMode: true });
  root.resolveAll();
  return root;
}

function collectServices(ns, out = []) {
  for (const nested of ns.nestedArray) {
    if (nested instanceof protobuf.Service) out.push(nested);
    else if (nested instanceof protobuf.Namespace) collectServices(nested, out);
  }
  return out;
}

const fullName = (reflected) => reflected.fullName.replace(/^\./, '');
const lowerFirst = (s) => s.charAt(0).toLowerCase() + s.slice(1);

function docComment(text, indent) {
  const lines = text.trim().split('\n');
  if (lines.length === 1) return `${indent}/** ${lines[0]} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} *${l ? ` ${l}` : ''}`).join('\n')}\n${indent} */\n`;
}

function renderService(service) {
  const name = fullName(service);
  const short = service.name;
  const methods = service.methodsArray;
  for (const m of methods) {
    if (m.requestStream || m.responseStream) throw new Error(`${name}/${m.name}: ttrpc 1.1 has no streaming`);
  }
  const req = (m) => fullName(m.resolvedRequestType);
  const res = (m) => fullName(m.resolvedResponseType);
  const about = (m) => m.comment ?? `Calls ${name}/${m.name}.`;

  let out = '';
  out += docComment(`Handlers for ${name}; the ttrpc server decodes each request and encodes the result.`, '');
  out += `export interface ${short}Service {\n`;
  for (const m of methods) {
    out += docComment(about(m), '  ');
    // The server encodes a missing result as Empty, so those handlers may return nothing.
    const result = res(m) === 'google.protobuf.Empty' ? `${res(m)}.$Properties | void` : `${res(m)}.$Properties`;
    out += `  ${lowerFirst(m.name)}(request: ${req(m)}, ctx: CallContext): Promise<${result}>;\n`;
  }
  out += '}\n\n';

  out += docComment(`Wire description of ${name}, for the ttrpc server and client.`, '');
  out += `export const ${short}Descriptor = {\n`;
  out += `  name: '${name}',\n`;
  out += '  methods: {\n';
  for (const m of methods) {
    out += `    ${m.name}: method<${req(m)}.$Properties, ${res(m)}>('${m.name}', '${lowerFirst(m.name)}', ${req(m)}, ${res(m)}),\n`;
  }
  out += '  },\n';
  out += '} as const satisfies ServiceDescriptor;\n\n';

  out += docComment(`Typed ttrpc client for ${name}.`, '');
  out += `export class ${short}Client {\n`;
  out += '  constructor(private readonly client: Client) {}\n';
  for (const m of methods) {
    out += '\n';
    out += docComment(about(m), '  ');
    out += `  ${lowerFirst(m.name)}(request: ${req(m)}.$Properties, options?: CallOptions): Promise<${res(m)}> {\n`;
    out += `    return this.client.call(${short}Descriptor.name, ${short}Descriptor.methods.${m.name}, request, options);\n`;
    out += '  }\n';
  }
  out += '}\n';
  return out;
}

function render(root) {
  const services = collectServices(root).sort((a, b) => fullName(a).localeCompare(fullName(b)));
  const shortNames = new Set();
  const namespaces = new Set();
  for (const s of services) {
    if (shortNames.has(s.name)) throw new Error(`two services named ${s.name}; exports are named by short name`);
    shortNames.add(s.name);
    for (const m of s.methodsArray) {
      namespaces.add(fullName(m.resolvedRequestType).split('.')[0]);
      namespaces.add(fullName(m.resolvedResponseType).split('.')[0]);
    }
  }

  let out = '';
  out += '// Code generated by scripts/gen-services.mjs from proto/. DO NOT EDIT.\n';
  out += '// Regenerate with `make proto`.\n\n';
  out += "import type { Client } from '../ttrpc/client.js';\n";
  out += "import type { CallContext, CallOptions } from '../ttrpc/context.js';\n";
  out += "import type { MessageType, MethodDescriptor, ServiceDescriptor } from '../ttrpc/descriptor.js';\n";
  out += `import { ${[...namespaces].sort().join(', ')} } from './protos.js';\n\n`;
  out += 'function method<Req, Res>(\n';
  out += '  name: string,\n';
  out += '  handler: string,\n';
  out += '  requestType: MessageType<Req>,\n';
  out += '  responseType: MessageType<Res>,\n';
  out += '): MethodDescriptor<Req, Res> {\n';
  out += '  return { name, handler, requestType, responseType };\n';
  out += '}\n';
  for (const s of services) out += '\n' + renderService(s);
  return out;
}

writeFileSync(OUT_FILE, render(loadRoot()));
