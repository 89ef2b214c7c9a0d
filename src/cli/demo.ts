/**
 * `ambit local demo`: brings up examples/demo (frontend → backend v1/v2 in an enrolled namespace
 * that uses a waypoint; a VirtualService splits backend traffic 90/10; an Istio Gateway exposes the
 * frontend as demo.example.com on the ingress gateway), sends requests from a client pod and from
 * the root namespace through the ingress gateway, and summarises what the mesh did. The mesh stays
 * up afterwards. Exits 1 when any request of either kind failed.
 */
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { callControl, type ExecTarget } from '../local/control.js';
import { podCommand } from '../local/exec.js';
import type { LocalStatus } from '../local/mesh.js';
import { renderTable, type Io } from './io.js';
import { common, formatStatus, netOption, runLocal, startLocal } from './local.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const REQUESTS = 100;
/** The host examples/demo/ingress.yaml exposes on the ingress gateway. */
export const DEMO_HOST = 'demo.example.com';

/** What the frontend's replies said: responses per backend text, addresses the backend saw, failures. */
export interface DemoTally {
  byVersion: Map<string, number>;
  sources: Set<string>;
  failures: number;
}

export function newTally(): DemoTally {
  return { byVersion: new Map(), sources: new Set(), failures: 0 };
}

/**
 * Counts one frontend reply: `ok` says the transport and status were fine; the body must be the
 * frontend's JSON with the backend's text. Anything else counts as `failed`.
 */
export function countReply(t: DemoTally, ok: boolean, body: string): void {
  let text: string | undefined;
  let client: string | undefined;
  try {
    const parsed = JSON.parse(body) as { backend?: { text?: unknown; client?: unknown } } | null;
    if (typeof parsed?.backend?.text === 'string') text = parsed.backend.text;
    if (typeof parsed?.backend?.client === 'string') client = parsed.backend.client;
  } catch {
    // not the frontend's JSON: a failure
  }
  if (!ok || text === undefined) {
    t.failures++;
    t.byVersion.set('failed', (t.byVersion.get('failed') ?? 0) + 1);
    return;
  }
  t.byVersion.set(text, (t.byVersion.get(text) ?? 0) + 1);
  if (client) t.sources.add(client.replace(/^::ffff:/, ''));
}

/** BACKEND / per-origin response counts, one row per backend text (failures last). */
export function splitRows(client: DemoTally, ingress: DemoTally): string[][] {
  const keys = [...new Set([...client.byVersion.keys(), ...ingress.byVersion.keys()])].sort((a, b) => (a === 'failed' ? 1 : b === 'failed' ? -1 : a < b ? -1 : a > b ? 1 : 0));
  return keys.map((k) => [k, String(client.byVersion.get(k) ?? 0), String(ingress.byVersion.get(k) ?? 0)]);
}

export async function runDemo(argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { name: { type: 'string' }, net: { type: 'string' } } });
  const { name, stateDir } = common(values);
  const nameFlag = name === 'ambit' ? '' : ` --name ${name}`;
  io.out('== Ambit local demo ==\n');
  await runLocal(['down', '--name', name], { out: () => undefined, err: io.err });
  io.out('starting a 2-node mesh with examples/demo (namespace "demo" is labelled istio.io/dataplane-mode=ambient)...\n');
  const st = await startLocal({ files: [join(repoRoot, 'examples/demo')], nodes: 2, name, net: netOption(values.net), capture: 'auto', timeoutMs: 120_000 }, io);
  io.out(formatStatus(st) + '\n');

  const client = st.pods.find((p) => p.namespace === 'demo' && p.name.startsWith('client-'));
  if (!client) throw new Error('demo client pod is missing');
  const target = await callControl<ExecTarget>(stateDir, 'GET', `/exec-target?namespace=demo&name=${encodeURIComponent(client.name)}`);
  io.out(`sending ${REQUESTS} requests: client pod → http://frontend:8080/ → http://backend:8080/ (through the waypoint: 90% v1, 10% v2)\n`);
  const fromClient = newTally();
  for (let i = 0; i < REQUESTS; i++) {
    const r = await execCapture(target, ['curl', '-sf', '-m', '5', 'http://frontend:8080/']);
    countReply(fromClient, r.code === 0, r.stdout);
  }

  const gatewayUrl = ingressUrl(st);
  const fromIngress = newTally();
  if (gatewayUrl) {
    io.out(`sending ${REQUESTS} requests from the root namespace through the ingress gateway: curl -H 'Host: ${DEMO_HOST}' ${gatewayUrl} (gateway → frontend → backend, each hop through the waypoint)\n`);
    // `up` returned once every proxy acknowledged its config: no warm-up, the first request counts.
    for (let i = 0; i < REQUESTS; i++) {
      const r = await hostGet(gatewayUrl, DEMO_HOST);
      countReply(fromIngress, r.status === 200, r.body);
    }
  } else {
    io.err(`the ingress gateway has no listener for ${DEMO_HOST} (see ambit local status${nameFlag})\n`);
    fromIngress.failures = REQUESTS;
    fromIngress.byVersion.set('failed', REQUESTS);
  }
  io.out(renderTable(['BACKEND', 'FROM CLIENT POD', 'FROM INGRESS'], splitRows(fromClient, fromIngress)) + '\n\n');

  const frontend = st.pods.find((p) => p.name.startsWith('frontend-'));
  const waypointPod = st.pods.find((p) => p.namespace === 'demo' && p.name.startsWith('waypoint-'));
  const sources = new Set([...fromClient.sources, ...fromIngress.sources]);
  if (waypointPod && sources.size === 1 && sources.has(waypointPod.ip)) {
    io.out(`the backend saw requests from ${waypointPod.ip}, the waypoint pod: L7 routing happens there, and the waypoint forwards over HBONE with its own identity\n`);
  } else if (frontend) {
    const preserved = sources.size === 1 && sources.has(frontend.ip);
    io.out(`the backend saw requests from ${[...sources].join(', ') || 'nobody'}; the frontend pod is ${frontend.ip}${preserved ? ': the source address is preserved through the tunnel' : ''}\n`);
  }

  const latest = await callControl<LocalStatus>(stateDir, 'GET', '/status');
  const rows: string[][] = [];
  for (const n of latest.nodes) {
    const text = await fetchText(n.metrics);
    rows.push([n.name, String(sumMetric(text, 'istio_tcp_connections_opened_total', { reporter: 'source' })), String(sumMetric(text, 'istio_tcp_connections_opened_total', { reporter: 'destination' })), n.metrics]);
  }
  io.out('\nmTLS tunnel (HBONE) connections counted by each node agent:\n');
  io.out(renderTable(['NODE', 'OPENED (SOURCE)', 'OPENED (DESTINATION)', 'METRICS'], rows) + '\n\n');
  const waypoint = latest.waypoints.find((w) => w.namespace === 'demo');
  if (waypoint) {
    const text = await fetchText(waypoint.metrics);
    const total = sumMetric(text, 'istio_requests_total', { reporter: 'waypoint' });
    const viaIngress = sumMetric(text, 'istio_requests_total', { reporter: 'waypoint', source_workload: 'istio-ingressgateway' });
    io.out(`the waypoint (${waypoint.pod}) handled ${total} HTTP requests, ${viaIngress} of them sent by the ingress gateway (istio_requests_total at ${waypoint.metrics})\n`);
  }
  const gateway = latest.ingressGateways[0];
  if (gateway) {
    const served = sumMetric(await fetchText(gateway.metrics), 'istio_requests_total', { destination_service_name: 'frontend', response_code: '200' });
    io.out(`the ingress gateway (${gateway.namespace}/${gateway.pod}) answered ${served} requests for ${DEMO_HOST} with 200 (istio_requests_total at ${gateway.metrics})\n`);
  }
  const captured = latest.pods.filter((p) => p.enrolled);
  io.out(`${captured.filter((p) => p.captured).length}/${captured.length} enrolled pods captured (${[...new Set(captured.map((p) => p.captureMode))].join(', ')})\n`);
  io.out(`${REQUESTS - fromClient.failures}/${REQUESTS} requests from the client pod and ${REQUESTS - fromIngress.failures}/${REQUESTS} through the ingress gateway succeeded.\n\n`);
  io.out(
    `The mesh is still running. Try:\n  npx ambit local status${nameFlag}\n  npx ambit local exec${nameFlag} demo/${client.name} -- curl -s http://backend:8080/\n` +
      (gatewayUrl ? `  curl -H 'Host: ${DEMO_HOST}' ${gatewayUrl}\n` : '') +
      `  npx ambit local down${nameFlag}\n`,
  );
  return fromClient.failures === 0 && fromIngress.failures === 0 ? 0 : 1;
}

/** The URL of the ingress gateway port that serves DEMO_HOST (up returns once the gateway is ready). */
export function ingressUrl(st: Pick<LocalStatus, 'ingressGateways'>): string | undefined {
  for (const g of st.ingressGateways) {
    const l = g.ready ? g.listeners.find((x) => x.protocol === 'HTTP' && x.hosts.includes(DEMO_HOST)) : undefined;
    if (l) return l.url;
  }
  return undefined;
}

/** GET `url` with a Host header, from the root namespace; status 0 when the request failed. */
function hostGet(url: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { headers: { host }, timeout: 5000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end();
  });
}

function fetchText(url: string): Promise<string> {
  return fetch(url, { signal: AbortSignal.timeout(5000) })
    .then((r) => r.text())
    .catch(() => '');
}

/** Sum of a Prometheus counter's samples whose labels include `labels`. */
function sumMetric(text: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') || !Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return total;
}

function execCapture(t: ExecTarget, cmd: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    const [sh, args] = podCommand(t.cgroupProcs, t.netns, cmd);
    const child = spawn(sh, args, { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, ...t.env } });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout }));
    child.on('error', () => resolve({ code: 127, stdout }));
  });
}
