/**
 * The one mechanism between the agent's main thread and its worker threads: requests and
 * one-way notes over a worker's message port (postMessage, structured clone). A request gets
 * exactly one reply; an error crosses as its message and code.
 * Invariants: messages on one port arrive in the order they were sent, so a config note posted
 * before an enrolment request is in force when the enrolment runs; close() rejects what is
 * still waiting for a reply.
 */
import type { MessagePort, Worker } from 'node:worker_threads';
import { errorMessage } from '../../shared/errors.js';

type Port = Pick<MessagePort, 'postMessage' | 'on' | 'off'> | Pick<Worker, 'postMessage' | 'on' | 'off'>;

interface RequestMsg {
  kind: 'request';
  id: number;
  method: string;
  arg: unknown;
}
interface ReplyMsg {
  kind: 'reply';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: { message: string; code?: string };
}
interface NoteMsg {
  kind: 'note';
  method: string;
  arg: unknown;
}
type Msg = RequestMsg | ReplyMsg | NoteMsg;

export type Handler = (arg: never) => unknown;

export class Rpc {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly handlers = new Map<string, Handler>();
  private readonly listener = (m: Msg): void => this.receive(m);
  private closedReason: string | undefined;

  constructor(private readonly port: Port) {
    (port as MessagePort).on('message', this.listener);
  }

  /** Serves `method`; what the handler returns (or resolves to) is the reply. */
  handle<A, R>(method: string, fn: (arg: A) => R | Promise<R>): void {
    this.handlers.set(method, fn as Handler);
  }

  call<R>(method: string, arg?: unknown): Promise<R> {
    if (this.closedReason !== undefined) return Promise.reject(new Error(this.closedReason));
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.port.postMessage({ kind: 'request', id, method, arg } satisfies RequestMsg);
    });
  }

  /** A message with no reply. */
  note(method: string, arg?: unknown): void {
    if (this.closedReason === undefined) this.port.postMessage({ kind: 'note', method, arg } satisfies NoteMsg);
  }

  /** Rejects every call still waiting and refuses new ones. */
  close(reason: string): void {
    this.closedReason = reason;
    (this.port as MessagePort).off('message', this.listener);
    for (const w of this.waiting.values()) w.reject(new Error(reason));
    this.waiting.clear();
  }

  private receive(m: Msg): void {
    if (m.kind === 'reply') {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.ok) w.resolve(m.value);
      else w.reject(Object.assign(new Error(m.error?.message ?? 'failed'), m.error?.code ? { code: m.error.code } : {}));
      return;
    }
    const fn = this.handlers.get(m.method);
    if (m.kind === 'note') {
      if (fn) (fn as (a: unknown) => unknown)(m.arg);
      return;
    }
    const reply = (r: Omit<ReplyMsg, 'kind' | 'id'>): void => {
      if (this.closedReason === undefined) this.port.postMessage({ kind: 'reply', id: m.id, ...r } satisfies ReplyMsg);
    };
    if (!fn) return reply({ ok: false, error: { message: `no handler for ${m.method}` } });
    try {
      Promise.resolve((fn as (a: unknown) => unknown)(m.arg)).then(
        (value) => reply({ ok: true, value }),
        (e: unknown) => reply({ ok: false, error: errorPayload(e) }),
      );
    } catch (e) {
      reply({ ok: false, error: errorPayload(e) });
    }
  }
}

function errorPayload(e: unknown): { message: string; code?: string } {
  const code = (e as { code?: unknown } | undefined)?.code;
  return { message: errorMessage(e), ...(typeof code === 'string' ? { code } : {}) };
}
