/**
 * `ambit demo-app grpc-echo`: the gRPC service ambit.demo.Echo (src/cli/echo.proto). Say replies
 * the server's text and pod name, or fails with the status the call asks for.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS, protoDir } from '../shared/api/load.js';

/** The demo gRPC service definition, loaded from src/cli/echo.proto (tsc does not copy protos to dist/). */
export function echoServiceDefinition(): grpc.ServiceDefinition {
  const path = join(protoDir(), '..', '..', 'cli', 'echo.proto');
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(path, PROTO_LOADER_OPTIONS)) as unknown as { ambit: { demo: { Echo: grpc.ServiceClientConstructor } } };
  return pkg.ambit.demo.Echo.service;
}

interface SayRequest {
  message: string;
  status: number;
}

/** The grpc-echo server with the Echo service added (not yet bound). */
export function createGrpcEcho(o: { text: string; pod: string; delayMs: number }): grpc.Server {
  const server = new grpc.Server();
  server.addService(echoServiceDefinition(), {
    Say: (call: grpc.ServerUnaryCall<SayRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const answer = (): void => {
        const code = call.request.status;
        if (code > 0 && code <= 16) return callback({ code, details: `status ${code} requested by the caller` });
        callback(null, { text: o.text, pod: o.pod, message: call.request.message });
      };
      if (o.delayMs > 0) setTimeout(answer, o.delayMs);
      else answer();
    },
  });
  return server;
}

/** Serves grpc-echo on 0.0.0.0:port (plaintext h2c). */
export async function listenGrpcEcho(o: { text: string; pod: string; delayMs: number }, port: number): Promise<grpc.Server> {
  const server = createGrpcEcho(o);
  await new Promise<void>((resolve, reject) => server.bindAsync(`0.0.0.0:${port}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return server;
}
