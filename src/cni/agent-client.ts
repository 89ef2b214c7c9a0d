/**
 * The plugin's side of the hand-off: one HTTP POST over the agent's Unix socket, bounded by a
 * timeout, turned into "done", "refused" or "unreachable".
 */
import { request } from 'node:http';
import { AmbitError, errorCode, errorMessage } from '../shared/errors.js';
import { CNI_MAX_BODY_BYTES, type CniAgentReply } from '../shared/cni-handoff.js';

export type AgentAnswer =
  | { kind: 'ok' }
  /** The agent answered and said no (a non-2xx status). */
  | { kind: 'refused'; status: number; message: string; code?: string }
  /** No answer: no socket, nobody listening, or no reply within the timeout. */
  | { kind: 'unreachable'; message: string };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** POSTs `body` to `path` on the agent's socket; never rejects. */
export function callAgent(socketPath: string, path: string, body: unknown, timeoutMs: number): Promise<AgentAnswer> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve) => {
    let settled = false;
    const finish = (a: AgentAnswer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(a);
    };
    const req = request(
      {
        socketPath,
        path,
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': String(payload.length), host: 'ambit-agent' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= CNI_MAX_BODY_BYTES) chunks.push(c);
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return finish({ kind: 'ok' });
          let reply: Partial<CniAgentReply> = {};
          try {
            const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            if (isRecord(parsed)) reply = parsed as Partial<CniAgentReply>;
          } catch {
            // A body that is not JSON still refuses; the status says so.
          }
          finish({
            kind: 'refused',
            status,
            message: typeof reply.error === 'string' && reply.error !== '' ? reply.error : `HTTP ${status}`,
            ...(typeof reply.code === 'string' ? { code: reply.code } : {}),
          });
        });
        res.on('error', (e) => finish({ kind: 'unreachable', message: `the answer broke off: ${errorMessage(e)}` }));
      },
    );
    const timer = setTimeout(() => {
      finish({ kind: 'unreachable', message: `no answer within ${timeoutMs} ms` });
      req.destroy();
    }, timeoutMs);
    req.on('error', (e) => {
      const code = errorCode(e);
      const why = code === 'ENOENT' ? 'the socket does not exist (is the agent running on this node?)' : code === 'ECONNREFUSED' ? 'nobody listens on the socket (is the agent running on this node?)' : errorMessage(e);
      finish({ kind: 'unreachable', message: why });
    });
    req.end(payload);
  });
}

/** Turns an answer into nothing (ok) or the AmbitError ADD/CHECK fail with. */
export function answerError(answer: AgentAnswer, what: string, socketPath: string): AmbitError | undefined {
  switch (answer.kind) {
    case 'ok':
      return undefined;
    case 'refused':
      return new AmbitError('AMBIT_ERR_CNI_AGENT_REFUSED', `the node agent could not ${what}: ${answer.message}`, {
        details: { cniCode: 100, status: answer.status, ...(answer.code ? { agentCode: answer.code } : {}) },
      });
    case 'unreachable':
      return new AmbitError('AMBIT_ERR_CNI_AGENT_UNREACHABLE', `the node agent at ${socketPath} did not answer, so the pod cannot be captured and must not start: ${answer.message}`, {
        details: { cniCode: 11 },
      });
  }
}
