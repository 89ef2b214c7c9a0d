/**
 * The agent's end of the CNI hand-off: an HTTP server on a Unix socket (mode 0600, in a run
 * folder of mode 0700, so only root on the node reaches it) that validates each request from the
 * plugin and waits for the agent's handler before answering. The plugin holds the pod's start
 * until then, so a 200 on ADD means "capture is in place".
 *
 * Invariants: one socket per run folder (a live agent's socket is never taken over; a stale one
 * is replaced); every request gets exactly one answer; a handler that throws answers 500 with its
 * message and code, never crashes the server; bad input answers 400 naming the field.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { JsonBodyError, readJsonBody, replyJson } from '../../shared/json-http.js';
import { connect } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../shared/log.js';
import { AmbitError, errorCode, errorMessage } from '../../shared/errors.js';
import { formatIssue } from '../../shared/validate.js';
import { Counter, Histogram, AMBIT_PREFIX, type Registry } from '../../shared/metrics.js';
import {
  CNI_MAX_BODY_BYTES,
  CNI_PATH_ADD,
  CNI_PATH_CHECK,
  CNI_PATH_DEL,
  parseCniPod,
  parseCniPodRef,
  type CniAgentReply,
  type CniPod,
  type CniPodRef,
} from '../../shared/cni-handoff.js';

/**
 * What the agent does for the plugin. Each method is called once per request; the runtime may
 * repeat ADD and DEL for the same sandbox, so both must be idempotent.
 */
export interface CniHandler {
  /**
   * A new sandbox of a pod that must be captured: resolve only once capture is in place in
   * `pod.netns` (the pod starts right after); reject to fail the sandbox (the runtime retries).
   */
  add(pod: CniPod): Promise<void>;
  /** Resolve when the sandbox's capture, made by ADD, is still in place; reject otherwise. */
  check(pod: CniPod): Promise<void>;
  /** Forget the sandbox; resolve also when it is unknown or was never captured. */
  del(pod: CniPodRef): Promise<void>;
}

export type CniOp = 'add' | 'check' | 'del';

export interface CniServerOptions {
  /** Absolute path of the socket; its folder is created with mode 0700. */
  socketPath: string;
  handler: CniHandler;
  log: Logger;
  registry?: Registry;
}

interface CniMetrics {
  requests: Counter<'op' | 'result'>;
  duration: Histogram<'op'>;
}

function createCniMetrics(registry: Registry): CniMetrics {
  return {
    requests: new Counter({
      name: `${AMBIT_PREFIX}cni_requests_total`,
      help: 'Requests from the CNI plugin, by operation and result (ok, refused: the handler failed, invalid: bad request).',
      labelNames: ['op', 'result'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: `${AMBIT_PREFIX}cni_request_duration_seconds`,
      help: 'Time from a CNI plugin request to the agent\'s answer (for ADD: until capture was in place).',
      labelNames: ['op'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
  };
}

const ROUTES: Record<string, CniOp> = { [CNI_PATH_ADD]: 'add', [CNI_PATH_CHECK]: 'check', [CNI_PATH_DEL]: 'del' };

export class CniServer {
  private readonly server: Server;
  private readonly log: Logger;
  private readonly metrics: CniMetrics | undefined;
  private closing = false;
  private listening = false;

  constructor(private readonly opts: CniServerOptions) {
    if (!opts.socketPath.startsWith('/')) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `CNI socket path must be absolute (got ${JSON.stringify(opts.socketPath)})`);
    this.log = opts.log.child({ component: 'cni-server' });
    this.metrics = opts.registry ? createCniMetrics(opts.registry) : undefined;
    this.server = createServer((req, res) => void this.serve(req, res));
    this.server.on('clientError', (_e, socket) => socket.destroy());
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  /** Creates the run folder, replaces a stale socket, listens and restricts the socket to root. */
  async start(): Promise<void> {
    const path = this.opts.socketPath;
    const dir = dirname(path);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const existing = await lstat(path).catch(() => undefined);
    if (existing) {
      if (!existing.isSocket()) {
        throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `${path} exists and is not a socket; refusing to replace it`);
      }
      if (await socketAnswers(path)) {
        throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `another process already serves the CNI socket ${path}; is a second agent running on this node?`);
      }
      await unlink(path);
    }
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(new AmbitError('AMBIT_ERR_CONFIG_INVALID', `cannot listen on CNI socket ${path}: ${errorMessage(e)}`, { cause: e }));
      this.server.once('error', onError);
      this.server.listen(path, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.listening = true;
    await chmod(path, 0o600);
    this.log.info({ socket: path }, 'cni socket listening');
  }

  /** Stops accepting; in-flight requests get their answer until the deadline, then are cut. */
  async close(deadlineMs: number): Promise<void> {
    if (!this.listening) return;
    this.closing = true;
    this.listening = false;
    const timer = setTimeout(() => this.server.closeAllConnections(), Math.max(0, deadlineMs));
    timer.unref();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
    clearTimeout(timer);
    await unlink(this.opts.socketPath).catch(() => undefined);
    this.log.info({ socket: this.opts.socketPath }, 'cni socket closed');
  }

  destroy(): void {
    this.closing = true;
    this.listening = false;
    this.server.closeAllConnections();
    this.server.close();
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const op = ROUTES[req.url ?? ''];
    if (op === undefined) return reply(res, 404, { ok: false, error: `unknown path ${req.url ?? ''}; use ${Object.keys(ROUTES).join(', ')}` });
    if (req.method !== 'POST') return reply(res, 405, { ok: false, error: `${req.method ?? ''} is not allowed; use POST` });
    if (this.closing) return reply(res, 503, { ok: false, error: 'the node agent is shutting down' });
    const started = performance.now();
    let body: unknown;
    try {
      body = await readJsonBody(req, CNI_MAX_BODY_BYTES);
    } catch (e) {
      this.count(op, 'invalid');
      const status = e instanceof JsonBodyError && e.reason === 'too-large' ? 413 : 400;
      return reply(res, status, { ok: false, error: errorMessage(e), code: 'AMBIT_ERR_CNI_REQUEST_INVALID' });
    }
    const parsed = op === 'del' ? parseCniPodRef(body) : parseCniPod(body);
    if ('issues' in parsed) {
      this.count(op, 'invalid');
      const error = `invalid ${op} request: ${parsed.issues.map(formatIssue).join('; ')}`;
      this.log.warn({ op, err: error }, 'cni request rejected');
      return reply(res, 400, { ok: false, error, code: 'AMBIT_ERR_CNI_REQUEST_INVALID' });
    }
    const pod = parsed.pod;
    const subject = { op, pod: `${pod.podNamespace}/${pod.podName}`, containerId: pod.containerId };
    try {
      if (op === 'add') await this.opts.handler.add(pod as CniPod);
      else if (op === 'check') await this.opts.handler.check(pod as CniPod);
      else await this.opts.handler.del(pod);
    } catch (e) {
      this.count(op, 'refused');
      this.log.warn({ ...subject, err: e }, 'cni request failed in the agent');
      return reply(res, 500, { ok: false, error: errorMessage(e), ...(errorCode(e) ? { code: errorCode(e)! } : {}) });
    }
    this.count(op, 'ok');
    this.metrics?.duration.observe({ op }, (performance.now() - started) / 1000);
    this.log.debug({ ...subject, durationMs: Math.round(performance.now() - started) }, 'cni request done');
    reply(res, 200, { ok: true });
  }

  private count(op: CniOp, result: 'ok' | 'refused' | 'invalid'): void {
    this.metrics?.requests.inc({ op, result });
  }
}

const reply = (res: ServerResponse, status: number, body: CniAgentReply): void => replyJson(res, status, body);

/** Whether something accepts connections on the socket at `path` (a live agent). */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 1000);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
