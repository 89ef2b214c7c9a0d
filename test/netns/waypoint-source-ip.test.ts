/**
 * Source addresses at a waypoint in `ambit local`: the waypoint matches AuthorizationPolicy
 * `ipBlocks` / `notIpBlocks` against the client address the source agent forwarded in the HBONE
 * CONNECT (`forwarded: for=`), for HTTP requests (403 RBAC: access denied) and for TCP
 * connections (reset), so a policy naming one client pod's address lets it through and stops
 * another pod of the same namespace. And ServiceEntries whose addresses are CIDR ranges: any
 * address inside is their host, through the waypoint (STATIC: to the entry's endpoints; NONE: to
 * the address the client dialed, pod addresses here).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isRoot, metricSum, podExec, repoRoot, waitFor } from '../helpers/local-mesh.js';
import { startWaypointMesh } from './waypoint-mesh.js';

const skip = isRoot() ? false : 'requires root (network namespaces, BPF, nftables)';
const URL = 'http://web:9080/x';

function policy(name: string, action: string, source: Record<string, string[]>, port: string): string {
  return JSON.stringify({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: 'srcip' },
    spec: { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }], action, rules: [{ from: [{ source }], to: [{ operation: { ports: [port] } }] }] },
  });
}

test('waypoint: ipBlocks and notIpBlocks match the client pod address the source agent forwarded (HTTP and TCP); ServiceEntry CIDR addresses', { skip, timeout: 600_000 }, async (t) => {
  const m = await startWaypointMesh(t, 'ts', [join(repoRoot, 'test/fixtures/waypoint-source-ip/app.yaml')], 'srcip');
  const dir = mkdtempSync(join(tmpdir(), 'ambit-srcip-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const st = await m.status();
  const client = st.pods.find((p) => p.namespace === 'srcip' && p.name.startsWith('client-'))!;
  const other = st.pods.find((p) => p.namespace === 'srcip' && p.name.startsWith('other-'))!;
  assert.ok(client && other, 'both client pods run');
  const fromOther = (argv: string[]) => podExec(m.name, `srcip/${other.name}`, argv);
  const curl = (url: string) => ['curl', '-s', '-m', '5', '-w', '\n%{http_code}', url];
  const status = (r: { stdout: string }) => r.stdout.trim().split('\n').pop();
  const tcpSend = async (exec: (argv: string[]) => Promise<{ stdout: string; stderr: string }>, marker: string, host = 'echo') => {
    const r = await exec([process.execPath, join(repoRoot, 'dist/test/helpers/netload.js'), 'send', host, '9000', marker]);
    return (JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { reply?: string }).reply;
  };
  await waitFor('a request through the waypoint', async () => ((await m.load([URL, '2', '1'])).statuses['200'] === 2 ? true : undefined));
  assert.equal(await tcpSend(fromOther, 'srcip-before'), 'srcip-before', 'without policies the other pod reaches the TCP echo');

  const allow = join(dir, 'allow.yaml');
  writeFileSync(allow, policy('only-client', 'ALLOW', { ipBlocks: [`${client.ip}/32`] }, '9080') + '\n---\n' + policy('only-client-tcp', 'ALLOW', { ipBlocks: [client.ip] }, '9000'));
  await m.apply(allow);

  await t.test('ALLOW ipBlocks naming the client pod: it gets 200, the other pod 403 RBAC: access denied', async () => {
    // The policy reaches the waypoint asynchronously: wait until the other pod is refused.
    await waitFor('the policy to apply at the waypoint', async () => (status(await fromOther(curl(URL))) === '403' ? true : undefined));
    const ok = await m.load([URL, '20', '2']);
    assert.deepEqual(ok.statuses, { '200': 20 }, JSON.stringify(ok));
    const denied = await fromOther(curl(URL));
    assert.equal(status(denied), '403', denied.stdout);
    assert.match(denied.stdout, /RBAC: access denied/);
  });

  await t.test('ALLOW ipBlocks on the TCP port: the client pod is carried, the other pod reset', async () => {
    assert.equal(await tcpSend(m.exec, 'srcip-allowed'), 'srcip-allowed');
    const reply = await tcpSend(fromOther, 'srcip-denied');
    assert.ok(reply === undefined || reply === '', `the other pod's connection is closed with no echo: ${JSON.stringify(reply)}`);
  });
  await m.remove(allow);

  const deny = join(dir, 'deny.yaml');
  writeFileSync(deny, policy('deny-not-client', 'DENY', { notIpBlocks: [client.ip] }, '9080'));
  await m.apply(deny);
  await t.test('DENY notIpBlocks naming the client pod: the other pod is denied, the client pod passes', async () => {
    await waitFor('the DENY policy to apply at the waypoint', async () => (status(await fromOther(curl(URL))) === '403' ? true : undefined));
    const ok = await m.load([URL, '20', '2']);
    assert.deepEqual(ok.statuses, { '200': 20 }, JSON.stringify(ok));
    const denied = await fromOther(curl(URL));
    assert.match(denied.stdout, /RBAC: access denied/);
  });
  await m.remove(deny);
  await t.test('without the policies both pods pass again', async () => {
    await waitFor('the other pod to pass again', async () => (status(await fromOther(curl(URL))) === '200' ? true : undefined));
  });

  await t.test('a ServiceEntry with CIDR addresses: any address in the range is its host (the most specific range wins), through the waypoint', async () => {
    await m.apply(join(repoRoot, 'test/fixtures/waypoint-source-ip/cidr-entry.yaml'));
    const first = await waitFor('the range to be served', async () => {
      const r = await m.load(['http://240.240.7.33/x', '1', '1']);
      return r.texts['web'] === 1 ? r : undefined;
    });
    assert.deepEqual(first.statuses, { '200': 1 });
    for (const ip of ['240.240.7.1', '240.240.7.77', '240.240.7.200']) {
      const r = await m.load([`http://${ip}/x`, '3', '1']);
      assert.deepEqual(r.texts, { web: 3 }, `${ip}: ${JSON.stringify(r)}`);
    }
    const wp = (await m.status()).pods.find((p) => p.namespace === 'srcip' && p.name.startsWith('waypoint-'))!;
    const text = await fetch(`http://${wp.ip}:15020/metrics`).then((r) => r.text());
    assert.ok(metricSum(text, 'istio_requests_total', { reporter: 'waypoint', destination_service: 'nets.example.com', response_code: '200' }) >= 7, 'the /24 is nets.example.com');
    assert.ok(metricSum(text, 'istio_requests_total', { reporter: 'waypoint', destination_service: 'upper.example.com', response_code: '200' }) >= 3, 'the /25 inside it is upper.example.com');
    const outside = await m.exec(['curl', '-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', 'http://240.240.8.1/x']);
    assert.notEqual(outside.stdout, '200', 'an address outside the ranges is no service');
  });

  await t.test('a NONE ServiceEntry with CIDR addresses: connections to pod addresses inside are its host, through its waypoint, to the address dialed', async () => {
    const pods = (await m.status()).pods.filter((p) => p.namespace === 'srcip');
    const web = pods.find((p) => p.name.startsWith('web-'))!;
    const echo = pods.find((p) => p.name.startsWith('echo-'))!;
    const slash24 = (ip: string) => `${ip.split('.').slice(0, 3).join('.')}.0/24`;
    const webUrl = `http://${web.ip}:9080/x`;
    // Without the entry a pod address is no service: the web pod's agent requires the namespace's
    // waypoint for its Service's port, and the client came straight, so it is refused.
    const before = await m.exec(curl(webUrl));
    assert.notEqual(status(before), '200', `a direct call to the web pod is refused: ${before.stdout}`);
    const entry = join(dir, 'none-entry.yaml');
    const addresses = [...new Set([slash24(web.ip), slash24(echo.ip)])];
    writeFileSync(
      entry,
      JSON.stringify({
        apiVersion: 'networking.istio.io/v1',
        kind: 'ServiceEntry',
        metadata: { name: 'pod-net', namespace: 'srcip' },
        spec: { hosts: ['podnet.example.net'], addresses, location: 'MESH_EXTERNAL', resolution: 'NONE', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }, { number: 9000, name: 'tcp', protocol: 'TCP' }] },
      }) +
        '\n---\n' +
        // Its routes apply at the waypoint: one aborts, the other goes to the host itself (the address dialed).
        JSON.stringify({
          apiVersion: 'networking.istio.io/v1',
          kind: 'VirtualService',
          metadata: { name: 'pod-net', namespace: 'srcip' },
          spec: { hosts: ['podnet.example.net'], http: [{ match: [{ uri: { prefix: '/vs-abort' } }], fault: { abort: { httpStatus: 418, percentage: { value: 100 } } }, route: [{ destination: { host: 'podnet.example.net' } }] }, { route: [{ destination: { host: 'podnet.example.net' } }], headers: { response: { set: { 'x-podnet': 'routed' } } } }] },
        }),
    );
    await m.apply(entry);
    // The namespace's istio.io/use-waypoint binds the entry: the client's agent sends it to the
    // waypoint, which sends it on to the address dialed (the web pod, as the waypoint's tunnel).
    await waitFor('the range to be served', async () => ((await m.load([webUrl, '1', '1'])).texts['web'] === 1 ? true : undefined));
    const r = await m.load([webUrl, '5', '1']);
    assert.deepEqual(r.texts, { web: 5 }, JSON.stringify(r));
    await waitFor('the VirtualService to apply at the waypoint', async () => (status(await m.exec(curl(`http://${web.ip}:9080/vs-abort`))) === '418' ? true : undefined));
    const routed = await m.exec(['curl', '-s', '-m', '5', '-D', '-', webUrl]);
    assert.match(routed.stdout, /x-podnet: routed/i, 'the route to the host itself answered, with its response header');
    assert.match(routed.stdout, /web/, 'from the web pod dialed');
    assert.equal(await tcpSend(m.exec, 'podnet-tcp', echo.ip), 'podnet-tcp', 'a TCP port of the entry reaches the echo pod it was addressed to');
    const empty = `${web.ip.split('.').slice(0, 3).join('.')}.250`;
    const nobody = await m.exec(['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${empty}:9080/x`]);
    assert.notEqual(nobody.stdout, '200', `an address of the range no pod has is not answered by some endpoint: ${nobody.stdout}`);

    const st = await m.status();
    const wp = st.pods.find((p) => p.namespace === 'srcip' && p.name.startsWith('waypoint-'))!;
    const wpText = await fetch(`http://${wp.ip}:15020/metrics`).then((x) => x.text());
    const named = { destination_service: 'podnet.example.net', destination_service_namespace: 'srcip' };
    assert.ok(metricSum(wpText, 'istio_requests_total', { reporter: 'waypoint', ...named, destination_workload: 'web', response_code: '200' }) >= 7, 'the waypoint served the requests as the entry host, to the web pod');
    assert.ok(metricSum(wpText, 'istio_tcp_connections_opened_total', { ...named, destination_workload: 'echo' }) >= 1, 'and the TCP connection, to the echo pod');
    let agents = '';
    for (const n of st.nodes) agents += await fetch(n.metrics).then((x) => x.text());
    const lines = agents.split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('podnet'));
    assert.ok(metricSum(agents, 'istio_tcp_connections_opened_total', { reporter: 'source', source_workload: 'client', ...named, destination_service_name: 'pod-net' }) >= 2, `the client's agent names the entry's host (HTTP and TCP connections): ${lines.join('\n')}`);

    const block = join(dir, 'none-policy.yaml');
    writeFileSync(
      block,
      JSON.stringify({
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: 'no-blocked', namespace: 'srcip' },
        spec: { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }], action: 'DENY', rules: [{ to: [{ operation: { paths: ['/blocked'] } }] }] },
      }),
    );
    await m.apply(block);
    await waitFor('the policy to apply at the waypoint', async () => (status(await m.exec(curl(`http://${web.ip}:9080/blocked`))) === '403' ? true : undefined));
    const denied = await m.exec(curl(`http://${web.ip}:9080/blocked`));
    assert.match(denied.stdout, /RBAC: access denied/);
    assert.deepEqual((await m.load([webUrl, '3', '1'])).texts, { web: 3 }, 'other paths still pass');
    await m.remove(block);
    await m.remove(entry);
  });
});
