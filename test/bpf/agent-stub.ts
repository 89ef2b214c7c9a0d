/**
 * A stand-in agent process for the restart tests (test/bpf/restart.test.ts): the real
 * BpfCapture and in-pod listeners made the agent's way, without the mesh around them.
 *   argv[2]: JSON { cgroupPath, pinDir, tag, pods: [{ uid, netnsPath }], prepare: [{ uid, netnsPath }] }
 * Per enrolled pod: 127.0.0.1:15001 reads the original destination, dials it from the pod with
 * the bypass mark, writes "via <tag>\n" and pipes both ways; [::]:15006 answers
 * "inbound <orig> via <tag>". Prints "ready" once everything is in place. SIGTERM is a graceful
 * stop: listeners close, established connections drain (up to 60 s), capture is released (not
 * removed), then "drained" and exit 0. Unhandled errors print and exit 1.
 */
import net from 'node:net';
import { silentLogger } from '../../src/shared/log.js';
import { BpfCapture } from '../../src/agent/capture/redirect.js';
import { originalDestination } from '../../src/agent/capture/orig-dst.js';
import { BYPASS_MARK, listenInNetns, socketFd, socketInNetns } from '../../native/netns.js';

interface StubArgs {
  cgroupPath: string;
  pinDir: string;
  tag: string;
  pods: { uid: string; netnsPath: string }[];
  prepare?: { uid: string; netnsPath: string }[];
}

const args = JSON.parse(process.argv[2] ?? '{}') as StubArgs;
const servers: net.Server[] = [];
const open = new Set<net.Socket>();

function track(s: net.Socket): void {
  open.add(s);
  s.on('close', () => open.delete(s));
  s.on('error', () => undefined);
}

function outboundProxy(netnsPath: string): net.Server {
  const server = net.createServer({ allowHalfOpen: true }, (down) => {
    track(down);
    let orig;
    try {
      orig = originalDestination(down, 'outbound');
    } catch {
      down.destroy();
      return;
    }
    const up = new net.Socket({ fd: socketInNetns(netnsPath, { family: net.isIPv6(orig.address) ? 'IPv6' : 'IPv4', mark: BYPASS_MARK }), allowHalfOpen: true });
    track(up);
    up.connect(orig.port, orig.address, () => {
      down.write(`via ${args.tag}\n`);
      down.pipe(up);
      up.pipe(down);
    });
    up.on('error', () => down.destroy());
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  });
  server.listen({ fd: listenInNetns(netnsPath, { address: '127.0.0.1', port: 15001 }) });
  return server;
}

function inboundServer(netnsPath: string): net.Server {
  const server = net.createServer((s) => {
    track(s);
    const o = originalDestination(s, 'inbound');
    s.end(`inbound ${o.address}:${o.port} via ${args.tag}`);
  });
  server.listen({ fd: listenInNetns(netnsPath, { address: '::', port: 15006 }) });
  return server;
}

async function main(): Promise<void> {
  const capture = await BpfCapture.open({ cgroupPath: args.cgroupPath, pinDir: args.pinDir, log: silentLogger() });
  for (const p of args.pods) {
    servers.push(outboundProxy(p.netnsPath));
    const inbound = inboundServer(p.netnsPath);
    servers.push(inbound);
    await capture.enroll({ uid: p.uid, netnsPath: p.netnsPath, inboundListenerFd: socketFd(inbound) });
  }
  for (const p of args.prepare ?? []) await capture.prepare(p);
  process.once('SIGTERM', () => {
    for (const s of servers) s.close();
    const deadline = Date.now() + 60_000;
    const wait = (): void => {
      if (open.size > 0 && Date.now() < deadline) {
        setTimeout(wait, 50);
        return;
      }
      void capture.close().then(() => {
        console.log('drained');
        process.exit(0);
      });
    };
    wait();
  });
  console.log('ready');
  setInterval(() => undefined, 1 << 30);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
