/**
 * Config-stream clients of the control-plane benchmark, a share of them in this process (forked
 * by run-size.ts over IPC, several such processes): `count` real ConfigClients (grpc-js, TLS, bearer token), each the agent
 * of one node, connected through an in-process TCP relay that counts the bytes the controller
 * sends. Messages in: start, arm (reset the per-change record), collect, stop. Out: ready, armed,
 * collected, with wall-clock times (performance.timeOrigin + now, comparable across processes).
 */
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { ConfigClient } from '../../src/shared/xds/client.js';
import { startProfile } from './profile.js';

export interface StartMessage {
  cmd: 'start';
  /** host:port of the controller. */
  address: string;
  rootPem: string;
  /** One per client: its node name and its token. */
  clients: Array<{ node: string; token: string }>;
  timeoutMs: number;
  /** Name of this process's CPU profile (with AMBIT_BENCH_CP_PROFILE). */
  profileName: string;
}

export type ClientCommand = StartMessage | { cmd: 'arm' } | { cmd: 'collect' } | { cmd: 'stop' };

export interface ClientUpdate {
  client: number;
  /** Wall-clock ms when onUpdate ran (the ACK follows it). */
  at: number;
  type: string;
}

export type ClientReply =
  | { kind: 'ready'; at: number; bytes: number; synced: number }
  | { kind: 'armed' }
  /** cpuMs: this process's CPU from arm to collect (the clients' cost of the change). */
  | { kind: 'collected'; bytes: number; updates: ClientUpdate[]; cpuMs: number }
  | { kind: 'error'; message: string };

const wallNow = (): number => performance.timeOrigin + performance.now();

/** A relay on 127.0.0.1 to `target`, counting bytes from the target. */
function startRelay(target: { host: string; port: number }): Promise<{ port: number; down: () => number; close: () => void }> {
  let down = 0;
  const sockets = new Set<net.Socket>();
  // No Nagle on either side: an agent talks to the controller directly, and a relay holding a
  // small write (a second response, an ACK) until the previous segment is ACKed would add the
  // kernel's delayed-ACK time to the change.
  const server = net.createServer({ noDelay: true }, (c) => {
    const u = net.connect({ ...target, noDelay: true });
    sockets.add(c).add(u);
    u.on('data', (d: Buffer) => (down += d.length));
    c.pipe(u).pipe(c);
    const end = (): void => {
      c.destroy();
      u.destroy();
    };
    c.on('error', end).on('close', end);
    u.on('error', end).on('close', end);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        down: () => down,
        close: () => {
          server.close();
          for (const s of sockets) s.destroy();
        },
      }),
    ),
  );
}

async function main(): Promise<void> {
  const send = (r: ClientReply): void => void process.send!(r);
  let clients: ConfigClient[] = [];
  let relay: Awaited<ReturnType<typeof startRelay>> | undefined;
  let armed = false;
  let updates: ClientUpdate[] = [];
  let bytesAtArm = 0;
  let profile: ReturnType<typeof startProfile> | undefined;
  let profileName = 'clients';
  let cpuAtArm = 0;
  const cpuMs = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  process.on('message', (m: ClientCommand) => {
    void (async () => {
      try {
        if (m.cmd === 'start') {
          profileName = m.profileName;
          const [host, port] = [m.address.slice(0, m.address.lastIndexOf(':')), Number(m.address.slice(m.address.lastIndexOf(':') + 1))];
          relay = await startRelay({ host, port });
          const log = silentLogger();
          const credentials = grpc.credentials.createSsl(Buffer.from(m.rootPem));
          clients = m.clients.map(
            (c, i) =>
              new ConfigClient({
                address: `127.0.0.1:${relay!.port}`,
                credentials,
                callMetadata: () => {
                  const md = new grpc.Metadata();
                  md.set('authorization', `Bearer ${c.token}`);
                  return md;
                },
                node: { id: `agent~${c.node}`, nodeName: c.node, role: 'agent' },
                onUpdate: (_state, change) => {
                  if (armed) updates.push({ client: i, at: wallNow(), type: change.typeUrl });
                },
                log,
                registry: createRegistry(),
              }),
          );
          for (const c of clients) c.start();
          const timer = setTimeout(() => send({ kind: 'error', message: `clients not synced within ${m.timeoutMs} ms` }), m.timeoutMs);
          await Promise.all(clients.map((c) => c.whenSynced()));
          clearTimeout(timer);
          send({ kind: 'ready', at: wallNow(), bytes: relay.down(), synced: clients.length });
        } else if (m.cmd === 'arm') {
          profile ??= startProfile();
          await profile;
          updates = [];
          bytesAtArm = relay?.down() ?? 0;
          cpuAtArm = cpuMs();
          armed = true;
          send({ kind: 'armed' });
        } else if (m.cmd === 'collect') {
          armed = false;
          send({ kind: 'collected', bytes: (relay?.down() ?? 0) - bytesAtArm, updates, cpuMs: cpuMs() - cpuAtArm });
        } else if (m.cmd === 'stop') {
          await (await profile)?.save(profileName);
          for (const c of clients) c.close();
          relay?.close();
          process.disconnect();
        }
      } catch (e) {
        send({ kind: 'error', message: e instanceof Error ? e.message : String(e) });
      }
    })();
  });
}

void main();
