const { PassThrough } = await import('node:stream');
async function stack(base, constPolicy) {
  const { withDeadline } = await import(base + '/src/waypoint/dispatch/deadline.js');
  const { withPoolGate } = await import(base + '/src/waypoint/balance/pool-gate.js');
  const { withMirror } = await import(base + '/src/waypoint/route/mirror.js');
  const { withRetries, defaultRetryPolicy } = await import(base + '/src/waypoint/dispatch/retry.js');
  const { balance } = await import(base + '/src/waypoint/balance/balance.js');
  const { Destinations } = await import(base + '/src/waypoint/balance/destinations.js');
  const ep = { key: '10.0.0.5:8080', address: '10.0.0.5', port: 8080 };
  const eps = [ep];
  const fake = async () => { const body = new PassThrough(); const r = { status: 200, headers: { 'content-length': '2' }, body, trailers: Promise.resolve({}) }; queueMicrotask(() => body.end('ok')); return r; };
  const now = () => performance.now();
  const dispatch = withDeadline(withPoolGate(withMirror(withRetries(balance(fake, { resolveEndpoints: () => eps, random: Math.random, onEjection() {}, onTryFailed() {} }), { now, random: Math.random, sleep: async () => {}, onRetry() {}, onTryTimeout() {}, onBudgetExhausted() {} }), { dispatch: fake, resolveEndpoints: () => eps, random: Math.random }), () => {}), { now, onTimeout() {} });
  const dests = new Destinations(now);
  const backend = { host: 'backend', weight: 1 };
  const P = defaultRetryPolicy();
  return async (N) => {
    const u0 = process.cpuUsage();
    for (let i = 0; i < N; i++) {
      const ctl = new AbortController();
      const resp = await dispatch({ reqId: 'x', target: { host: 'backend', port: 8080 }, destination: dests.of(backend, undefined), method: 'GET', path: '/', authority: 'backend', headers: {}, body: undefined, http2: false, route: 'r', service: 'backend', timeoutMs: undefined, retryPolicy: constPolicy ? P : defaultRetryPolicy(), mirror: undefined, overall: ctl.signal, signal: ctl.signal, record: { retries: 0, tried: new Set(), flags: [] } });
      resp.body.resume();
      await new Promise((ok) => resp.body.once('close', ok));
    }
    const u = process.cpuUsage(u0); return (u.user + u.system) / N;
  };
}
const a = await stack('/tmp/wpperf-base/dist', false), b = await stack('/work/wt/wpperf/dist', true);
const ra = [], rb = [];
for (let r = 0; r < 16; r++) { ra.push(await a(10000)); rb.push(await b(10000)); }
const st = (xs) => { xs = xs.slice(3).sort((x, y) => x - y); return `min ${xs[0].toFixed(2)} median ${xs[Math.floor(xs.length / 2)].toFixed(2)}`; };
console.log('base', st(ra)); console.log('new ', st(rb));
