/**
 * `ambit proxy-status`: one row per config subscriber (agents, waypoints, gateways) with the sync
 * state of each resource type and the capture summary, read from the controller's /debug/syncz
 * (like `istioctl proxy-status`).
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { SynczReport, SynczSubscriber, SynczType } from '../controller/admin.js';
import { AmbitError, errorMessage } from '../shared/errors.js';
import { renderTable, type Io } from './io.js';

/** Local mode's controller admin address (the bridge IP, port 15014). */
export const DEFAULT_CONTROLLER_ADMIN_URL = 'http://10.240.0.1:15014';
/** The admin token of the default local mesh (`ambit local up` writes it, root-only). */
export const DEFAULT_ADMIN_TOKEN_FILE = '/run/ambit/ambit/admin-token';

export const PROXY_STATUS_USAGE = `Usage: ambit proxy-status [--controller http://host:15014] [--token-file FILE] [-o json]

Shows, for every agent, waypoint and gateway connected to the controller, whether it holds the
current config of each type: SYNCED, STALE (push pending), NACKED: <reason>, NOT SENT.
  --controller URL   controller admin endpoint (default ${DEFAULT_CONTROLLER_ADMIN_URL}, local mode)
  -o, --output json  print the controller's /debug/syncz document
  --token-file FILE  bearer token the controller's /debug/* needs (default ${DEFAULT_ADMIN_TOKEN_FILE}
                     when it exists: the local mesh's admin token)
  --timeout MS       request timeout (default 5000)
`;

/** Column order of the per-type states. */
const TYPE_COLUMNS = ['workload', 'service', 'authorization'] as const;
const MAX_NACK_CHARS = 60;

export interface ProxyStatusOptions {
  /** Used when --controller is not given. */
  defaultController?: string;
  /** Used when --token-file is not given (missing file: no token). */
  defaultTokenFile?: string;
  fetch?: typeof fetch;
}

export async function runProxyStatus(argv: string[], io: Io, opts: ProxyStatusOptions = {}): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        controller: { type: 'string' },
        'token-file': { type: 'string' },
        output: { type: 'string', short: 'o' },
        timeout: { type: 'string', default: '5000' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `${errorMessage(e)}\n\n${PROXY_STATUS_USAGE}`, { cause: e });
  }
  if (values.help) {
    io.out(PROXY_STATUS_USAGE);
    return 0;
  }
  const output = values.output ?? 'table';
  if (output !== 'table' && output !== 'json') {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `-o ${JSON.stringify(output)} is not supported; use -o json or leave it out for a table`);
  }
  const timeoutMs = Number(values.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `--timeout must be a positive number of milliseconds (got ${JSON.stringify(values.timeout)})`);
  }
  const base = values.controller ?? opts.defaultController ?? DEFAULT_CONTROLLER_ADMIN_URL;
  const token = await readTokenFile(values['token-file'], opts.defaultTokenFile ?? DEFAULT_ADMIN_TOKEN_FILE);
  const report = await fetchSyncz(base, timeoutMs, opts.fetch ?? fetch, token);
  if (output === 'json') {
    io.out(JSON.stringify(report, null, 2) + '\n');
    return 0;
  }
  io.out(renderProxyStatus(report) + '\n');
  return 0;
}

/** GETs `<base>/debug/syncz`; throws AMBIT_ERR_ADMIN_UNAVAILABLE naming the URL and likely cause. */
/** The token in `--token-file` (which must be readable), else in the default file when it exists. */
async function readTokenFile(given: string | undefined, fallback: string): Promise<string | undefined> {
  try {
    return (await readFile(given ?? fallback, 'utf8')).trim();
  } catch (e) {
    if (given === undefined) return undefined;
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `--token-file ${given} cannot be read: ${errorMessage(e)}`, { cause: e });
  }
}

export async function fetchSyncz(base: string, timeoutMs: number, doFetch: typeof fetch = fetch, token?: string): Promise<SynczReport> {
  let url: URL;
  try {
    url = new URL('/debug/syncz', base);
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `--controller ${JSON.stringify(base)} is not a URL such as http://10.240.0.1:15014`, { cause: e });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `--controller ${JSON.stringify(base)} must be an http:// or https:// URL`);
  }
  let res: Response;
  try {
    res = await doFetch(url, { signal: AbortSignal.timeout(timeoutMs), ...(token !== undefined ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  } catch (e) {
    const why = e instanceof Error && e.cause instanceof Error ? e.cause.message : errorMessage(e);
    throw new AmbitError('AMBIT_ERR_ADMIN_UNAVAILABLE', `cannot reach the controller admin endpoint ${url.href}: ${why}; is the controller (or \`ambit local up\`) running and is --controller right?`, { cause: e });
  }
  const text = await res.text();
  if (res.status === 401) {
    throw new AmbitError('AMBIT_ERR_ADMIN_UNAVAILABLE', `controller admin endpoint ${url.href} needs its admin token: pass --token-file (local mode: /run/ambit/<name>/admin-token); it said: ${text.slice(0, 200).trim()}`);
  }
  if (!res.ok) {
    throw new AmbitError('AMBIT_ERR_ADMIN_UNAVAILABLE', `controller admin endpoint ${url.href} answered ${res.status}: ${text.slice(0, 200).trim()}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_ADMIN_UNAVAILABLE', `controller admin endpoint ${url.href} did not answer JSON; is that the controller's admin port (15014)?`, { cause: e });
  }
  if (typeof body !== 'object' || body === null || !Array.isArray((body as { subscribers?: unknown }).subscribers)) {
    throw new AmbitError('AMBIT_ERR_ADMIN_UNAVAILABLE', `controller admin endpoint ${url.href} answered JSON without a subscribers list; is that the controller's admin port (15014)?`);
  }
  return body as SynczReport;
}

/** One type's cell: `SYNCED (1a2b3c4d)`, `STALE (pending 1a2b3c4d)`, `NACKED: <reason>`, `NOT SENT`. */
export function formatTypeState(t: SynczType | undefined): string {
  if (!t) return '-';
  const short = (v: string | null): string => (v ?? '').slice(0, 8);
  switch (t.state) {
    case 'SYNCED':
      return `SYNCED (${short(t.ackedVersion)})`;
    case 'STALE':
      return t.pending !== null ? `STALE (pending ${short(t.sentVersion)})` : `STALE (has ${short(t.ackedVersion)}, want ${short(t.targetVersion)})`;
    case 'NACKED': {
      const msg = nackText(t);
      return `NACKED: ${msg.length > MAX_NACK_CHARS ? msg.slice(0, MAX_NACK_CHARS - 3) + '...' : msg}`;
    }
    default:
      return 'NOT SENT';
  }
}

/** A NACK message on one line, long version hashes shortened to 8 characters. */
function nackText(t: SynczType): string {
  return (t.lastNack?.message ?? '').replace(/\s+/g, ' ').replace(/\b([0-9a-f]{8})[0-9a-f]{8,}\b/g, '$1').trim();
}

/** Capture cell: `2/3 (ambient=2, none=1)`; `-` for subscribers that report no pods. */
export function formatCapture(s: SynczSubscriber): string {
  if (s.role !== 'agent' && s.capture.total === 0) return '-';
  const modes = Object.entries(s.capture.modes)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([m, n]) => `${m}=${n}`)
    .join(', ');
  return `${s.capture.captured}/${s.capture.total}${modes ? ` (${modes})` : ''}`;
}

/** The table `ambit proxy-status` prints. */
export function renderProxyStatus(report: SynczReport): string {
  if (report.subscribers.length === 0) return `no agents, waypoints or gateways are connected to the controller at ${report.controller}`;
  const header = ['NAME', ...TYPE_COLUMNS.map((t) => t.toUpperCase()), 'CAPTURED'];
  const rows = report.subscribers.map((s) => [
    s.name,
    ...TYPE_COLUMNS.map((c) => formatTypeState(s.types.find((t) => t.type === c))),
    formatCapture(s),
  ]);
  const table = renderTable(header, rows);
  // Full NACK messages below the table: the cell shows only their start.
  const nacks = report.subscribers.flatMap((s) =>
    s.types.filter((t) => t.state === 'NACKED').map((t) => `  ${s.name} ${t.type}: ${nackText(t)}`),
  );
  return nacks.length > 0 ? `${table}\n\nRejected config (the subscriber keeps its last good version):\n${nacks.join('\n')}` : table;
}
