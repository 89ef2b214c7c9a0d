/**
 * Waiting on a Kubernetes API the event-driven way, as a controller does: an informer (list, then
 * watch) on a collection, and a check run on its cache after the first list and after every
 * change. A test waits for the event that makes its condition true, not for a poll interval.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { createLogger } from '../../src/shared/log.js';
import type { KubeObject } from '../../src/controller/objects.js';
import { Informer, KubeClient } from '../../src/local/kube-client.js';

/** A client with the credentials of a kubeconfig file (token and inline CA, as local mode writes them). */
export function kubeClientFromKubeconfig(file: string): KubeClient {
  const kc = parse(readFileSync(file, 'utf8')) as {
    clusters: Array<{ cluster: { server: string; 'certificate-authority-data': string } }>;
    users: Array<{ user: { token: string } }>;
  };
  const cluster = kc.clusters[0]!.cluster;
  const token = kc.users[0]!.user.token;
  return new KubeClient({ server: cluster.server, caPem: Buffer.from(cluster['certificate-authority-data'], 'base64').toString('utf8'), token: () => token });
}

export interface WatchUntilOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** Default 60 s: a deadline for a failure message, never a pacing of the wait. */
  timeoutMs?: number;
}

/**
 * Resolves with the first value `check` returns for the objects of collection `path` (checked on
 * the first list and on every watch event); rejects after the deadline naming `what` and what the
 * cache held then.
 */
export function watchUntil<T>(client: KubeClient, path: string, what: string, check: (items: KubeObject[]) => T | undefined, opts: WatchUntilOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const finish = (f: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      informer.stop();
      f();
    };
    const evaluate = (): void => {
      if (done || !informer.ready) return;
      let v: T | undefined;
      try {
        v = check(informer.list());
      } catch (e) {
        finish(() => reject(e as Error));
        return;
      }
      if (v !== undefined) finish(() => resolve(v));
    };
    const informer = new Informer({
      client,
      path,
      apiVersion: 'v1',
      kind: 'Object',
      ...(opts.labelSelector ? { labelSelector: opts.labelSelector } : {}),
      ...(opts.fieldSelector ? { fieldSelector: opts.fieldSelector } : {}),
      log: createLogger({ level: 'silent' }),
      onEvent: evaluate,
    });
    const timer = setTimeout(() => {
      const held = informer.list().map((o) => `${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name} ${JSON.stringify({ annotations: o.metadata.annotations ?? {}, status: o.status ?? {} })}`);
      finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${path} held:\n${held.join('\n') || '(nothing)'}`)));
    }, timeoutMs);
    void informer.start().then(evaluate);
  });
}

/** True when a Pod's Ready condition is True. */
export function podReady(p: KubeObject): boolean {
  const conditions = ((p.status?.conditions as Array<{ type: string; status: string }> | undefined) ?? []);
  return conditions.some((c) => c.type === 'Ready' && c.status === 'True');
}
