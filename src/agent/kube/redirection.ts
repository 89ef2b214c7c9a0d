/**
 * Keeps the `ambient.istio.io/redirection` annotation of this node's pods equal to what the agent
 * does with their traffic, as istio-cni's node agent does: `enabled` while captured, `pending`
 * while held at pod start, absent otherwise. Written with JSON merge patches on pods/status (the
 * only write the agent's RBAC grants), level-triggered from a watch of the node's pods.
 *
 * Invariants: nothing is written before the agent applied its first config (a restarted agent
 * must not strip the annotation of pods it still captures); only pods the watch shows on this
 * node are patched, each with its uid as a precondition; a failed patch is retried with capped
 * backoff and never throws out; a lost watch is restarted with backoff.
 */
import type { Logger } from '../../shared/log.js';
import { backoffMs } from '../../shared/drain.js';
import { isAmbitError } from '../../shared/errors.js';
import { AMBIT_PREFIX, Counter, type Registry } from '../../shared/metrics.js';
import type { PodRedirection, Redirection } from '../agent.js';
import { nodePodOf, type ApiPod, type NodePod, type NodePodsClient } from './client.js';
import type { Informer } from '../../shared/kube-informer.js';

export const ANNOTATION_REDIRECTION = 'ambient.istio.io/redirection';

export interface RedirectionPatch {
  pod: NodePod;
  /** The annotation's new value; null removes it. */
  value: Redirection | null;
}

/**
 * The patches that make each of `nodeName`'s pods say what the agent does. A redirection whose
 * pod uid differs from the API's pod (re-created under the same name) does not apply to it.
 */
export function planRedirectionPatches(pods: readonly NodePod[], wanted: readonly PodRedirection[], nodeName: string): RedirectionPatch[] {
  const byRef = new Map(wanted.map((r) => [`${r.namespace}/${r.name}`, r]));
  const out: RedirectionPatch[] = [];
  for (const pod of pods) {
    if (pod.nodeName !== nodeName) continue;
    const w = byRef.get(`${pod.namespace}/${pod.name}`);
    const desired = w && (w.podUid === undefined || w.podUid === pod.uid) ? w.state : undefined;
    const current = pod.annotations[ANNOTATION_REDIRECTION];
    if (desired === current) continue;
    out.push({ pod, value: desired ?? null });
  }
  return out;
}

export interface RedirectionAnnotatorOptions {
  pods: NodePodsClient;
  /** What the agent does now (Agent.redirections). */
  redirections: () => PodRedirection[];
  /** True once the agent applied its first config. */
  ready: () => boolean;
  log: Logger;
  registry?: Registry;
  /** Retry backoff for failed patches and a lost watch (default 1 s to 30 s). */
  backoff?: { baseMs?: number; capMs?: number };
}

export class RedirectionAnnotator {
  private readonly log: Logger;
  private readonly patches: Counter<'result'> | undefined;
  private informer: Informer<ApiPod> | undefined;
  private watchSynced = false;
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;

  constructor(private readonly opts: RedirectionAnnotatorOptions) {
    this.log = opts.log.child({ component: 'redirection-annotator' });
    this.patches = opts.registry
      ? new Counter({
          name: `${AMBIT_PREFIX}pod_annotation_patches_total`,
          help: `Patches of the ${ANNOTATION_REDIRECTION} annotation on this node's pods, by result (ok, error).`,
          labelNames: ['result'],
          registers: [opts.registry],
        })
      : undefined;
  }

  /**
   * Starts watching this node's pods; patches follow once the agent has its first config and the
   * first list arrived. The watch keeps its cache while it reconnects (patches carry the pod's
   * uid as a precondition, so a stale cache cannot touch a re-created pod).
   */
  start(): void {
    const informer = this.opts.pods.watch({
      log: this.log,
      onChange: () => this.update(),
      onError: (what, err, retryInMs) => this.log.warn({ err, waitMs: retryInMs }, `${what} of this node's pods failed; retrying`),
      backoff: { initialMs: this.opts.backoff?.baseMs ?? 1000, maxMs: this.opts.backoff?.capMs ?? 30_000 },
    });
    this.informer = informer;
    void informer.start().then(() => {
      if (this.closed) return;
      this.watchSynced = true;
      this.log.info({ node: this.opts.pods.nodeName, pods: informer.list().length }, 'watching this node\'s pods');
      this.update();
    });
  }

  /** Re-checks every pod soon (call after the agent's redirections changed). */
  update(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.running = this.sync().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.update();
      }
    });
  }

  /** Resolves once no sync is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.informer?.stop();
    await this.idle();
  }

  private async sync(): Promise<void> {
    const informer = this.informer;
    if (!informer || !this.watchSynced || !this.opts.ready() || this.closed) return;
    const pods = informer
      .list()
      .map(nodePodOf)
      .filter((p): p is NodePod => p !== undefined);
    const plan = planRedirectionPatches(pods, this.opts.redirections(), this.opts.pods.nodeName);
    let failed = 0;
    for (const { pod, value } of plan) {
      try {
        await this.opts.pods.patchAnnotations(pod, { [ANNOTATION_REDIRECTION]: value });
        this.patches?.inc({ result: 'ok' });
        this.log.info({ pod: `${pod.namespace}/${pod.name}`, redirection: value ?? '(removed)' }, 'pod redirection annotation written');
      } catch (e) {
        this.patches?.inc({ result: 'error' });
        const status = isAmbitError(e) ? e.details?.['status'] : undefined;
        // Gone, or re-created under the name (uid precondition): the watch brings the news.
        if (status === 404 || status === 409) continue;
        failed++;
        this.log.warn({ pod: `${pod.namespace}/${pod.name}`, err: e }, 'writing the pod redirection annotation failed; retrying');
      }
    }
    if (failed === 0) {
      this.failures = 0;
      return;
    }
    const waitMs = backoffMs(this.failures++, this.opts.backoff?.baseMs ?? 1000, this.opts.backoff?.capMs ?? 30_000);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.update();
    }, waitMs);
    this.timer.unref();
  }
}
