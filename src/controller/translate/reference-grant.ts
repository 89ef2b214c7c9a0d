/**
 * Gateway API ReferenceGrant: a route may name a backend Service in another namespace only when a
 * ReferenceGrant in that namespace allows references from the route's kind and namespace to
 * Services (all of them, or the one named). A reference no grant allows is RefNotPermitted.
 */
import { GROUP_GATEWAY_API, type KubeObject } from '../objects.js';
import { asArray, asRecord, asString, nsOf } from './util.js';

export interface CrossReference {
  /** The referring route: its kind (HTTPRoute, GRPCRoute, TCPRoute, TLSRoute) and namespace. */
  fromKind: string;
  fromNamespace: string;
  /** The Service referred to. */
  toNamespace: string;
  toName: string;
}

/** Whether `ref` is allowed: same namespace, or a grant in the target namespace covers it. */
export function referencePermitted(grants: readonly KubeObject[], ref: CrossReference): boolean {
  if (ref.fromNamespace === ref.toNamespace) return true;
  return grants.some((g) => {
    if (nsOf(g) !== ref.toNamespace) return false;
    const spec = asRecord(g.spec);
    const from = asArray(spec['from']).map(asRecord).some((f) => asString(f['group']) === GROUP_GATEWAY_API && asString(f['kind']) === ref.fromKind && asString(f['namespace']) === ref.fromNamespace);
    if (!from) return false;
    return asArray(spec['to']).map(asRecord).some((t) => (asString(t['group']) ?? '') === '' && asString(t['kind']) === 'Service' && (asString(t['name']) ?? ref.toName) === ref.toName);
  });
}

/** The message of a reference no grant allows. */
export function refNotPermitted(ref: CrossReference): string {
  return `RefNotPermitted: backendRef to Service ${ref.toNamespace}/${ref.toName} is not allowed: no ReferenceGrant in namespace ${ref.toNamespace} allows ${ref.fromKind} from namespace ${ref.fromNamespace}`;
}
