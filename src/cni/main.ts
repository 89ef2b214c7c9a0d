/**
 * The `ambit-cni` executable: the runtime runs it with CNI_* variables and the network
 * configuration on stdin; it prints the result (or the CNI error) on stdout and exits. All
 * decisions are in plugin.ts; this shell only wires the real API lookups, the agent's socket and
 * the process. On a node it is started by the launcher the installer writes (install.ts).
 */
import { existsSync } from 'node:fs';
import { callAgent } from './agent-client.js';
import { kubeGetObject, loadKubeconfig } from './kube.js';
import { runPlugin, type PluginDeps } from './plugin.js';
import type { NamespaceFacts, PodFacts } from './decide.js';

const deps: PluginDeps = {
  async lookup(settings, namespace, name) {
    const target = await loadKubeconfig(settings.kubeconfig);
    const ns = encodeURIComponent(namespace);
    const [pod, nsObj] = await Promise.all([
      kubeGetObject(target, `/api/v1/namespaces/${ns}/pods/${encodeURIComponent(name)}`, settings.kubeTimeoutMs),
      kubeGetObject(target, `/api/v1/namespaces/${ns}`, settings.kubeTimeoutMs),
    ]);
    return { pod: pod as unknown as PodFacts, namespace: nsObj as unknown as NamespaceFacts };
  },
  callAgent,
  netnsExists: (path) => existsSync(path),
};

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const outcome = await runPlugin(process.env, await readStdin(), deps);
process.stdout.write(outcome.stdout, () => process.exit(outcome.exitCode));
