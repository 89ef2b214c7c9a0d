/**
 * A real gRPC `envoy.service.auth.v3.Authorization` server for TCP checks (Envoy's network
 * ext_authz: peers only, no HTTP request), on the .proto the proxies load. `allow` decides each
 * check; every check is recorded. Shut down when the test ends.
 */
import type { TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../src/shared/api/load.js';

export interface CheckPeer {
  address?: { socketAddress?: { address?: string; portValue?: number } };
  principal?: string;
}

export interface TcpCheck {
  attributes: { source?: CheckPeer; destination?: CheckPeer; request?: { http?: unknown } };
}

export async function startTcpAuthorizer(t: TestContext, host: string, allow: (check: TcpCheck) => boolean): Promise<{ port: number; seen: TcpCheck[] }> {
  const pkg = loadProto('ext-authz.proto') as unknown as { envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } } };
  const seen: TcpCheck[] = [];
  const server = new grpc.Server();
  server.addService(pkg.envoy.service.auth.v3.Authorization.service, {
    Check: (call: grpc.ServerUnaryCall<TcpCheck, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      seen.push(call.request);
      cb(null, allow(call.request) ? { status: { code: 0 } } : { status: { code: 7, message: 'denied by the test authorizer' } });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(`${host}:0`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  t.after(() => server.forceShutdown());
  return { port, seen };
}
