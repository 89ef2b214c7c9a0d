/**
 * Which Secrets some Gateway references (pure): the only Secrets the Kubernetes source keeps in the
 * store. An Istio Gateway's `credentialName` is read in the namespace of each gateway pod its
 * selector matches (as Istio does), with its `<credentialName>-cacert` companion (the CA
 * certificates of MUTUAL servers may live there); a Gateway API listener's `certificateRefs` name Secrets in the
 * Gateway's namespace unless they say otherwise.
 */
import { REF_GATEWAY_API_GATEWAY, REF_ISTIO_GATEWAY, kindRef, type KubeObject } from '../objects.js';
import { asArray, asRecord, asString, labelsOf, matchesLabels, nsOf } from '../translate/util.js';
import { CA_SECRET_SUFFIX } from '../translate/gateway-listeners.js';

/** `<namespace>/<name>` of every Secret a Gateway of either API references. */
export function referencedSecrets(objects: Iterable<KubeObject>): Set<string> {
  const pods: KubeObject[] = [];
  const istio: KubeObject[] = [];
  const gatewayApi: KubeObject[] = [];
  for (const o of objects) {
    const ref = kindRef(o);
    if (ref === 'Pod') pods.push(o);
    else if (ref === REF_ISTIO_GATEWAY) istio.push(o);
    else if (ref === REF_GATEWAY_API_GATEWAY) gatewayApi.push(o);
  }
  const out = new Set<string>();
  for (const gw of istio) {
    const names = asArray(asRecord(gw.spec)['servers'])
      .map((s) => asString(asRecord(asRecord(s)['tls'])['credentialName']))
      .filter((n): n is string => !!n);
    if (names.length === 0) continue;
    const selector: Record<string, string> = {};
    for (const [k, v] of Object.entries(asRecord(asRecord(gw.spec)['selector']))) if (typeof v === 'string') selector[k] = v;
    if (Object.keys(selector).length === 0) continue;
    for (const p of pods) {
      if (!matchesLabels(selector, labelsOf(p))) continue;
      for (const n of names) out.add(`${nsOf(p)}/${n}`).add(`${nsOf(p)}/${n}${CA_SECRET_SUFFIX}`);
    }
  }
  for (const gw of gatewayApi) {
    for (const l of asArray(asRecord(gw.spec)['listeners'])) {
      for (const ref of asArray(asRecord(asRecord(l)['tls'])['certificateRefs']).map(asRecord)) {
        const kind = asString(ref['kind']) ?? 'Secret';
        const group = asString(ref['group']) ?? '';
        const name = asString(ref['name']);
        if (kind !== 'Secret' || group !== '' || !name) continue;
        out.add(`${asString(ref['namespace']) ?? nsOf(gw)}/${name}`);
      }
    }
  }
  return out;
}
