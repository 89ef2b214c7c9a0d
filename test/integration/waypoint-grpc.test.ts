/**
 * Real gRPC (grpc-js client and server, `ambit demo-app grpc-echo`) through the waypoint on
 * 127.0.0.1: an OK reply, a status the server fails with (trailers-only), and a fault abort's
 * status reach the client, and istio_requests_total carries grpc_response_status.
 */
import { validateRouteConfig } from '../../src/shared/validate-routes.js';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { createGrpcEcho, echoServiceDefinition } from '../../src/cli/grpc-echo.js';
import { createLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { emptyHeaderOps, type RouteConfig } from '../../src/shared/routes.js';
import { WaypointServer } from '../../src/waypoint/server/server.js';
import { HttpUpstream } from '../../src/waypoint/endpoint/upstream.js';
import { seededRandom } from '../../src/waypoint/route/weighted.js';

const SVC = 'greeter.demo.svc.cluster.local';

type SayClient = grpc.Client & { Say(req: unknown, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: { text: string }) => void): void };

async function setup(t: TestContext): Promise<{ call: (req: object, md?: Record<string, string>) => Promise<{ code: number; details?: string; text?: string }>; registry: ReturnType<typeof createRegistry> }> {
  const backend = createGrpcEcho({ text: 'g1', pod: 'greeter-0', delayMs: 0 });
  const backendPort = await new Promise<number>((resolve, reject) => backend.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  t.after(() => backend.forceShutdown());
  const registry = createRegistry();
  const upstream = new HttpUpstream();
  const server = new WaypointServer({
    log: createLogger({ level: 'warn', destination: new Writable({ write: (_c, _e, cb) => cb() }) }),
    registry,
    dispatch: upstream.dispatch,
    resolveEndpoints: () => [{ key: `127.0.0.1:${backendPort}`, address: '127.0.0.1', port: backendPort, labels: { app: 'greeter', version: 'v1' }, workload: 'greeter', namespace: 'demo' }],
    random: seededRandom(1),
  });
  const headers = { request: emptyHeaderOps(), response: emptyHeaderOps() };
  const config: RouteConfig = {
    name: `demo/${SVC}`,
    namespace: 'demo',
    hostname: SVC,
    aliases: ['greeter'],
    ports: [{ port: 50051, protocol: 'grpc' }],
    routes: [
      { name: 'abort', match: [{ headers: [{ name: 'x-fault', match: { exact: 'abort' } }], queryParams: [] }], backends: [{ host: SVC, port: 50051, weight: 1 }], headers, fault: { abort: { percent: 100, grpcStatus: 14 } } },
      { name: 'default', match: [], backends: [{ host: SVC, port: 50051, weight: 1 }], headers },
    ],
    authorization: [],
  };
  assert.deepEqual(validateRouteConfig(config), [], 'the test route config is valid');
  server.setRoutes([config]);
  const addr = await server.listen(0, '127.0.0.1');
  t.after(async () => {
    await server.close(1000);
    upstream.close();
  });
  const Client = grpc.makeGenericClientConstructor(echoServiceDefinition(), 'Echo');
  const client = new Client(`127.0.0.1:${addr.port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'greeter:50051' }) as unknown as SayClient;
  t.after(() => client.close());
  const call = (req: object, md: Record<string, string> = {}) =>
    new Promise<{ code: number; details?: string; text?: string }>((resolve) => {
      const meta = new grpc.Metadata();
      for (const [k, v] of Object.entries(md)) meta.set(k, v);
      client.Say(req, meta, (err, reply) => resolve(err ? { code: err.code, details: err.details } : { code: 0, text: reply!.text }));
    });
  return { call, registry };
}

async function grpcRequests(registry: ReturnType<typeof createRegistry>, status: string): Promise<number> {
  const m = await registry.getSingleMetric('istio_requests_total')!.get();
  return m.values.filter((v) => v.labels['grpc_response_status'] === status && v.labels['request_protocol'] === 'grpc').reduce((n, v) => n + v.value, 0);
}

test('gRPC through the waypoint: OK, a server status (trailers-only) and a fault abort status reach a grpc-js client', { timeout: 30_000 }, async (t) => {
  const { call, registry } = await setup(t);
  assert.deepEqual(await call({ message: 'hi' }), { code: 0, text: 'g1' });
  const failed = await call({ message: 'x', status: grpc.status.NOT_FOUND });
  assert.equal(failed.code, grpc.status.NOT_FOUND, JSON.stringify(failed));
  assert.match(failed.details ?? '', /status 5 requested/);
  const aborted = await call({ message: 'y' }, { 'x-fault': 'abort' });
  assert.equal(aborted.code, grpc.status.UNAVAILABLE, JSON.stringify(aborted));
  assert.match(aborted.details ?? '', /fault filter abort/);
  assert.equal(await grpcRequests(registry, '0'), 1);
  assert.equal(await grpcRequests(registry, '5'), 1);
  assert.equal(await grpcRequests(registry, '14'), 1);
});
