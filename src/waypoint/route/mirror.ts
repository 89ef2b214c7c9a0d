/**
 * Traffic mirroring (Istio `mirror`, Gateway API RequestMirror): a copy of the request goes to one
 * endpoint of the mirror backend, with `-shadow` appended to the host; its response is read and
 * dropped, and nothing about it reaches the caller. A body too large to replay is not mirrored.
 * withMirror sends it from inside the dispatch stack, once the request got a pool slot.
 */
import type { MirrorPolicy } from '../../shared/routes.js';
import type { BackendTarget, ProxyDispatch, ProxyRequest } from '../dispatch/dispatch.js';
import type { Dispatch, Endpoint } from '../endpoint/upstream.js';
import { rollPercent } from '../filters/fault.js';
import { hostOfAuthority } from './router.js';
import type { RandomSource } from './weighted.js';

/** How long a mirrored request may take before it is cancelled. */
const MIRROR_TIMEOUT_MS = 10_000;

export interface MirrorDeps {
  dispatch: Dispatch;
  resolveEndpoints: (target: BackendTarget) => Endpoint[];
  random: RandomSource;
}

/** What the mirror copy is made of. */
export type MirroredRequest = Pick<ProxyRequest, 'method' | 'path' | 'authority' | 'headers' | 'body' | 'http2'>;

/** The mirror as a dispatch layer: the copy leaves before the first try. */
export function withMirror(next: ProxyDispatch, deps: MirrorDeps): ProxyDispatch {
  return (req) => {
    if (req.mirror) mirrorRequest(req.mirror, req, deps);
    return next(req);
  };
}

/** Sends the mirror copy when the dice (mirror percent) say so. */
export function mirrorRequest(m: MirrorPolicy, req: MirroredRequest, deps: MirrorDeps): void {
  if (!rollPercent(m.percent, deps.random) || (req.body && !req.body.replayable)) return;
  const port = m.port;
  if (port === undefined) return;
  const eps = deps.resolveEndpoints({ host: m.host, port, ...(m.subset ? { subset: m.subset } : {}), ...(m.subsetLabels ? { subsetLabels: m.subsetLabels } : {}) });
  const ep = eps[Math.floor(deps.random() * eps.length)];
  if (!ep) return;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), MIRROR_TIMEOUT_MS);
  const host = hostOfAuthority(req.authority);
  deps
    .dispatch(ep, { method: req.method, path: req.path, authority: `${host}-shadow`, headers: { ...req.headers }, body: req.body?.open(), http2: req.http2, signal: ctl.signal })
    .then(
      (r) => {
        r.body.resume();
        r.body.once('close', () => clearTimeout(timer));
      },
      () => clearTimeout(timer),
    );
}
