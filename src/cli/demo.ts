/**
 * `ambit local demo`: brings up examples/demo (frontend → backend v1/v2 in an enrolled namespace
 * that uses a waypoint; a VirtualService splits backend traffic 90/10), sends requests from a client
 * pod, and summarises what the mesh did. The mesh stays up afterwards.
 */
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { callControl, type ExecTarget } from '../local/control.js';
import { podCommand } from '../local/exec.js';
import { stateDirFor, type LocalStatus } from '../local/mesh.js';
import { renderTable, type Io } from './io.js';
import { formatStatus, runLocal, startLocal } from './local.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const REQUESTS = 100;

export async function runDemo(_argv: string[], io: Io): Promise<number> {
  const name = 'ambit';
  const stateDir = stateDirFor(name);
  io.out('== Ambit local demo ==\n');
  await runLocal(['down', '--name', name], { out: () => undefined, err: io.err });
  io.out('starting a 2-node mesh with examples/demo (namespace "demo" is labelled istio.io/dataplane-mode=ambient)...\n');
  const st = await startLocal({ files: [join(repoRoot, 'examples/demo')], nodes: 2, name, capture: 'auto', timeoutMs: 120_000 }, io);
  io.out(formatStatus(st) + '\n');

  const client = st.pods.find((p) => p.namespace === 'demo' && p.name.startsWith('client-'));
  if (!client) throw new Error('demo client pod is missing');
  const target = await callControl<ExecTarget>(stateDir, 'GET', `/exec-target?namespace=demo&name=${encodeURIComponent(client.name)}`);
  io.out(`sending ${REQUESTS} requests: client pod → http://frontend:8080/ → http://backend:8080/ (through the waypoint: 90% v1, 10% v2)\n`);
  const byVersion = new Map<string, number>();
  const sources = new Set<string>();
  let failures = 0;
  for (let i = 0; i < REQUESTS; i++) {
    const r = await execCapture(target, ['curl', '-s', '-m', '5', 'http://frontend:8080/']);
    try {
      const body = JSON.parse(r.stdout) as { backend?: { text?: string; client?: string } };
      const text = body.backend?.text ?? 'error';
      byVersion.set(text, (byVersion.get(text) ?? 0) + 1);
      if (body.backend?.client) sources.add(body.backend.client.replace(/^::ffff:/, ''));
      if (!body.backend?.text) failures++;
    } catch {
      failures++;
      byVersion.set('failed', (byVersion.get('failed') ?? 0) + 1);
    }
  }
  io.out(renderTable(['BACKEND', 'RESPONSES'], [...byVersion.entries()].sort().map(([k, v]) => [k, String(v)])) + '\n\n');
  const frontend = st.pods.find((p) => p.name.startsWith('frontend-'));
  const waypointPod = st.pods.find((p) => p.namespace === 'demo' && p.name.startsWith('waypoint-'));
  if (waypointPod && sources.size === 1 && sources.has(waypointPod.ip)) {
    io.out(`the backend saw requests from ${waypointPod.ip}, the waypoint pod: L7 routing happens there, and the waypoint forwards over HBONE with its own identity\n`);
  } else if (frontend) {
    const preserved = sources.size === 1 && sources.has(frontend.ip);
    io.out(`the backend saw requests from ${[...sources].join(', ') || 'nobody'}; the frontend pod is ${frontend.ip}${preserved ? ': the source address is preserved through the tunnel' : ''}\n`);
  }

  const latest = await callControl<LocalStatus>(stateDir, 'GET', '/status');
  const rows: string[][] = [];
  for (const n of latest.nodes) {
    const text = await fetch(n.metrics).then((r) => r.text()).catch(() => '');
    rows.push([n.name, String(sumMetric(text, 'istio_tcp_connections_opened_total', 'source')), String(sumMetric(text, 'istio_tcp_connections_opened_total', 'destination')), n.metrics]);
  }
  io.out('\nmTLS tunnel (HBONE) connections counted by each node agent:\n');
  io.out(renderTable(['NODE', 'OPENED (SOURCE)', 'OPENED (DESTINATION)', 'METRICS'], rows) + '\n\n');
  const waypoint = latest.pods.find((p) => p.namespace === 'demo' && p.name.startsWith('waypoint-'));
  if (waypoint) {
    const url = `http://${waypoint.ip}:15020/metrics`;
    const text = await fetch(url).then((r) => r.text()).catch(() => '');
    io.out(`the waypoint (${waypoint.name}) handled ${sumMetric(text, 'istio_requests_total', 'waypoint')} HTTP requests (istio_requests_total at ${url})\n`);
  }
  const captured = latest.pods.filter((p) => p.enrolled);
  io.out(`${captured.filter((p) => p.captured).length}/${captured.length} enrolled pods captured (${[...new Set(captured.map((p) => p.captureMode))].join(', ')})\n`);
  io.out(`${REQUESTS - failures}/${REQUESTS} requests succeeded.\n\n`);
  io.out(`The mesh is still running. Try:\n  npx ambit local status\n  npx ambit local exec demo/${client.name} -- curl -s http://backend:8080/\n  npx ambit local down\n`);
  return failures === 0 ? 0 : 1;
}

function sumMetric(text: string, name: string, reporter: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') || !line.includes(`reporter="${reporter}"`)) continue;
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
