/**
 * A real agent process with its data path on worker threads, for the kill test in
 * test/bpf/workers.test.ts.
 *   argv[2]: JSON { cgroupPath, pinDir, workers, pods: [{ name, namespace, ip, netns }] }
 * Opens BPF capture, enrolls the pods (no policy) and prints "ready <admin port>". It is killed
 * with SIGKILL; it never exits on its own.
 */
import { silentLogger } from '../../src/shared/log.js';
import { BpfCapture } from '../../src/agent/capture/redirect.js';
import { testWorkload } from '../helpers/loopback-net.js';
import { snapshot, startWorkerAgent } from './worker-agent.js';

interface StubArgs {
  cgroupPath: string;
  pinDir: string;
  workers: number;
  pods: { name: string; namespace: string; ip: string; netns: string }[];
}

const args = JSON.parse(process.argv[2] ?? '{}') as StubArgs;
const capture = await BpfCapture.open({ cgroupPath: args.cgroupPath, pinDir: args.pinDir, log: silentLogger() });
const { agent } = startWorkerAgent(capture, { workers: args.workers });
const { admin } = await agent.startAdmin({ metrics: { host: '127.0.0.1', port: 0 }, ready: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
await agent.applyConfig(snapshot(args.pods.map((p) => testWorkload(p))));
if (!agent.statusProvider().every((s) => s.captured)) throw new Error(`not every pod enrolled: ${JSON.stringify(agent.statusProvider())}`);
process.stdout.write(`ready ${admin.port}\n`);
