// finishRequest cost: base vs new, alternating in one process
async function mk(base) {
  const { finishRequest } = await import(base + '/src/waypoint/server/telemetry.js');
  const { createWaypointMetrics } = await import(base + '/src/waypoint/metrics.js');
  const { createRegistry, } = await import(base + '/src/shared/metrics.js');
  const { createLogger } = await import(base + '/src/shared/log.js');
  const deps = { metrics: createWaypointMetrics(createRegistry()), accessLog: createLogger({ level: 'warn' }), now: () => performance.now(), reporter: 'waypoint', serviceOf: () => ({ hostname: 'backend.bench-l7.svc.cluster.local', name: 'backend', namespace: 'bench-l7' }), spanExporter: undefined };
  const src = { principal: 'spiffe://cluster.local/ns/bench-l7/sa/l7-client', namespace: 'bench-l7', workload: 'client', canonicalService: 'l7-client', canonicalRevision: 'latest', cluster: 'Kubernetes' };
  const ep = { key: '10.0.0.5:8080', address: '10.0.0.5', port: 8080, workload: 'backend', namespace: 'bench-l7', canonicalService: 'l7-backend', canonicalRevision: 'v1', principal: 'spiffe://cluster.local/ns/bench-l7/sa/l7-backend', cluster: 'Kubernetes' };
  const res = { writableFinished: true };
  return (N) => { const u0 = process.cpuUsage(); for (let i = 0; i < N; i++) finishRequest(deps, { reqId: 'x', started: 0, method: 'GET', authority: 'backend:8080', path: '/', protocol: 'http', http2: false, status: 200, flags: [], record: { retries: 0, tried: new Set(), flags: [], endpoint: ep }, bytesIn: 0, bytesOut: 100, source: src, headerBytes: 80, service: 'backend.bench-l7.svc.cluster.local', serviceNamespace: 'bench-l7' }, res); const u = process.cpuUsage(u0); return (u.user + u.system) / N; };
}
const a = await mk('/tmp/wpperf-base/dist'), b = await mk('/work/wt/wpperf/dist');
const ra = [], rb = [];
for (let r = 0; r < 16; r++) { ra.push(a(50000)); rb.push(b(50000)); }
const st = (xs) => { xs = xs.slice(3).sort((x, y) => x - y); return `min ${xs[0].toFixed(3)} median ${xs[Math.floor(xs.length / 2)].toFixed(3)}`; };
console.log('base', st(ra)); console.log('new ', st(rb));
