import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { repoRoot } from './repo.js';

/**
 * A gRPC client for containerd's CRI plugin (runtime.v1), over the
 * messages of proto/cri/runtime/v1/api.proto, loaded at run time. Field
 * names are camelCase (protobufjs's default), int64s plain numbers, enums
 * their names, bytes Buffers, and unset fields their defaults.
 */

/** Seconds a CRI call may take before it fails with DEADLINE_EXCEEDED, so a wedged runtime fails the test instead of hanging it. */
const CALL_DEADLINE_S = 60;

export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';

export interface LinuxContainerResources {
  readonly cpuPeriod?: number;
  readonly cpuQuota?: number;
  readonly cpuShares?: number;
  readonly memoryLimitInBytes?: number;
  readonly memorySwapLimitInBytes?: number;
}

export interface NamespaceOption {
  readonly network?: NamespaceMode;
  readonly pid?: NamespaceMode;
  readonly ipc?: NamespaceMode;
}

export interface PodSandboxConfig {
  readonly metadata: { readonly name: string; readonly uid: string; readonly namespace: string; readonly attempt?: number };
  readonly hostname?: string;
  readonly logDirectory?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly linux?: {
    readonly cgroupParent?: string;
    readonly securityContext?: { readonly namespaceOptions?: NamespaceOption };
  };
}

export interface ContainerConfig {
  readonly metadata: { readonly name: string; readonly attempt?: number };
  readonly image: { readonly image: string };
  readonly command?: readonly string[];
  readonly args?: readonly string[];
  readonly envs?: ReadonlyArray<{ readonly key: string; readonly value: string }>;
  readonly logPath?: string;
  readonly linux?: { readonly resources?: LinuxContainerResources; readonly securityContext?: { readonly namespaceOptions?: NamespaceOption } };
}

export interface ContainerStatus {
  readonly id: string;
  readonly metadata: { readonly name: string };
  readonly state: ContainerState;
  readonly exitCode: number;
  readonly reason: string;
  readonly message: string;
  readonly logPath: string;
}

export interface UInt64Value {
  readonly value: number;
}

export interface ContainerStats {
  readonly attributes: { readonly id: string } | null;
  readonly cpu: { readonly timestamp: number; readonly usageCoreNanoSeconds: UInt64Value | null } | null;
  readonly memory: { readonly timestamp: number; readonly workingSetBytes: UInt64Value | null; readonly usageBytes: UInt64Value | null } | null;
}

/** Request and response of each RuntimeService method the tests call. */
export interface RuntimeCalls {
  Version: [{ version?: string }, { runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }];
  RunPodSandbox: [{ config: PodSandboxConfig; runtimeHandler?: string }, { podSandboxId: string }];
  StopPodSandbox: [{ podSandboxId: string }, object];
  RemovePodSandbox: [{ podSandboxId: string }, object];
  PodSandboxStatus: [{ podSandboxId: string }, { status: { id: string; state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY'; runtimeHandler: string } }];
  CreateContainer: [{ podSandboxId: string; config: ContainerConfig; sandboxConfig: PodSandboxConfig }, { containerId: string }];
  StartContainer: [{ containerId: string }, object];
  StopContainer: [{ containerId: string; timeout?: number }, object];
  RemoveContainer: [{ containerId: string }, object];
  ListContainers: [{ filter?: { podSandboxId?: string } }, { containers: Array<{ id: string; podSandboxId: string; state: ContainerState }> }];
  ContainerStatus: [{ containerId: string }, { status: ContainerStatus }];
  UpdateContainerResources: [{ containerId: string; linux: LinuxContainerResources }, object];
  ExecSync: [{ containerId: string; cmd: readonly string[]; timeout?: number }, { stdout: Buffer; stderr: Buffer; exitCode: number }];
  ContainerStats: [{ containerId: string }, { stats: ContainerStats }];
}

/** Request and response of each ImageService method the tests call. */
export interface ImageCalls {
  ImageStatus: [{ image: { image: string } }, { image: { id: string; repoTags: string[] } | null }];
}

/** A failed CRI call: the gRPC status code and the runtime's message. */
export class CriCallError extends Error {
  constructor(
    readonly method: string,
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`CRI ${method}: ${grpc.status[code] ?? code}: ${details}`);
    this.name = 'CriCallError';
  }
}

let cachedRoot: protobuf.Root | undefined;

function criProtoRoot(): protobuf.Root {
  cachedRoot ??= protobuf.loadSync(join(repoRoot(), 'proto', 'cri', 'runtime', 'v1', 'api.proto'));
  return cachedRoot;
}

/** A CRI client on containerd's gRPC socket. */
export class CriClient {
  private readonly client: grpc.Client;
  private readonly root = criProtoRoot();

  constructor(socketPath: string) {
    this.client = new grpc.Client(`unix://${socketPath}`, grpc.credentials.createInsecure());
  }

  runtime<M extends keyof RuntimeCalls>(method: M, request: RuntimeCalls[M][0]): Promise<RuntimeCalls[M][1]> {
    return this.call('RuntimeService', method, request) as Promise<RuntimeCalls[M][1]>;
  }

  image<M extends keyof ImageCalls>(method: M, request: ImageCalls[M][0]): Promise<ImageCalls[M][1]> {
    return this.call('ImageService', method, request) as Promise<ImageCalls[M][1]>;
  }

  close(): void {
    this.client.close();
  }

  private call(serviceName: string, methodName: string, request: object): Promise<unknown> {
    const method = this.root.lookupService(`runtime.v1.${serviceName}`).methods[methodName];
    if (method === undefined) throw new Error(`runtime.v1.${serviceName} has no method ${methodName} in proto/cri`);
    const requestType = this.root.lookupType(method.requestType);
    const responseType = this.root.lookupType(method.responseType);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        `/runtime.v1.${serviceName}/${methodName}`,
        (req: object) => Buffer.from(requestType.encode(requestType.fromObject(req)).finish()),
        (buf: Buffer) => responseType.toObject(responseType.decode(buf), { longs: Number, enums: String, defaults: true }),
        request,
        { deadline: Date.now() + CALL_DEADLINE_S * 1000 },
        (e, response) => {
          if (e) reject(new CriCallError(methodName, e.code, e.details));
          else resolve(response);
        },
      );
    });
  }
}
