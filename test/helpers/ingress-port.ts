/** An ingress gateway HTTP port (IngressListeners, as a gateway pod opens it) in front of a WaypointServer in gateway mode. */
import type { TestContext } from 'node:test';
import * as net from 'node:net';
import { silentLogger } from '../../src/shared/log.js';
import { IngressListeners } from '../../src/waypoint/server/gateway.js';
import type { WaypointServer } from '../../src/waypoint/server/server.js';

/** Opens a free port on 127.0.0.1 as an Istio Gateway HTTP server for any host; returns it. */
export async function ingressPort(t: TestContext, server: WaypointServer): Promise<number> {
  const listeners = new IngressListeners({ log: silentLogger(), host: '127.0.0.1', source: { workload: 'istio-ingressgateway' }, accept: (c, meta) => server.acceptConnection(c, meta) });
  t.after(() => listeners.close());
  const probe = net.createServer();
  const port = await new Promise<number>((r) => probe.listen(0, '127.0.0.1', () => r((probe.address() as net.AddressInfo).port)));
  await new Promise<void>((r) => probe.close(() => r()));
  await listeners.apply([{ pod: 'istio-system/gw', port, protocol: 'HTTP', gateways: ['shop/gw'], hosts: ['*'], certificates: [] }]);
  return port;
}
