/**
 * Every CRD Ambit ships, and their rendering into daemonset/crds/ (one YAML file per CRD plus a
 * kustomization.yaml per set). The files are generated from this module and committed; a unit
 * test fails when they drift.
 */
import { stringify } from 'yaml';
import { AmbitError } from '../shared/errors.js';
import { checkCrd, type CustomResourceDefinition } from '../shared/crd.js';
import { formatIssue } from '../shared/validate.js';
import { ISTIO_CRDS } from './istio.js';
import { GATEWAY_API_CRDS } from './gateway-api.js';

export { ISTIO_CRDS, GATEWAY_API_CRDS };

/** The CRD sets, each a kustomization under daemonset/crds/<set>/. */
export const CRD_SETS: ReadonlyArray<{ dir: string; title: string; crds: readonly CustomResourceDefinition[] }> = [
  { dir: 'istio', title: "Istio's configuration kinds", crds: ISTIO_CRDS },
  { dir: 'gateway-api', title: 'Gateway API kinds', crds: GATEWAY_API_CRDS },
];

export const ALL_CRDS: readonly CustomResourceDefinition[] = [...ISTIO_CRDS, ...GATEWAY_API_CRDS];

const HEADER = '# Generated from src/crds/ by `npm run gen:crds`; edit the TypeScript, not this file.\n';

function toYaml(value: unknown): string {
  return stringify(value, { lineWidth: 0, aliasDuplicateObjects: false });
}

/**
 * The files of daemonset/crds/, keyed by path relative to daemonset/crds/. Throws
 * AMBIT_ERR_CRD_SCHEMA_INVALID when any CRD fails the API server's checks (nothing is rendered).
 */
export function renderCrdFiles(): Map<string, string> {
  const problems = ALL_CRDS.flatMap((crd) => checkCrd(crd, crd.metadata.name));
  if (problems.length > 0) {
    throw new AmbitError('AMBIT_ERR_CRD_SCHEMA_INVALID', `CRD definitions in src/crds/ are invalid: ${problems.length} problem(s)\n${problems.map((p) => '  ' + formatIssue(p)).join('\n')}`, {
      details: { issues: problems },
    });
  }
  const files = new Map<string, string>();
  for (const set of CRD_SETS) {
    const names: string[] = [];
    for (const crd of set.crds) {
      const name = `${crd.metadata.name}.yaml`;
      names.push(name);
      files.set(`${set.dir}/${name}`, HEADER + toYaml(crd));
    }
    const kustomization = {
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      resources: names,
    };
    files.set(`${set.dir}/kustomization.yaml`, `${HEADER}# ${set.title}.\n${toYaml(kustomization)}`);
  }
  return files;
}
