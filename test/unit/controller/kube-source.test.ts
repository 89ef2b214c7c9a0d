/** Pure parts of the Kubernetes source: which Secrets a Gateway references, which CRD version is read. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { referencedSecrets } from '../../../src/controller/source/secret-refs.js';
import { servedVersion } from '../../../src/controller/source/kubernetes.js';
import { KINDS, type KubeObject } from '../../../src/controller/objects.js';
import { collectionPath, crdName, objectPath, resourceOf } from '../../../src/controller/source/kube-paths.js';

const pod = (name: string, ns: string, labels: Record<string, string>): KubeObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels }, spec: {} });

test('referenced Secrets: Istio credentialName in the namespace of each selected gateway pod; Gateway API certificateRefs', () => {
  const istio: KubeObject = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'Gateway',
    metadata: { name: 'ingress', namespace: 'shop' },
    spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 443, protocol: 'HTTPS' }, hosts: ['*'], tls: { mode: 'SIMPLE', credentialName: 'shop-cert' } }, { port: { number: 80, protocol: 'HTTP' }, hosts: ['*'] }] },
  };
  const gwApi: KubeObject = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'public', namespace: 'web' },
    spec: {
      gatewayClassName: 'ambit',
      listeners: [
        { name: 'a', port: 443, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'own' }, { name: 'other-ns', namespace: 'certs' }, { kind: 'ConfigMap', name: 'not-a-secret' }] } },
        { name: 'b', port: 80, protocol: 'HTTP' },
      ],
    },
  };
  const got = referencedSecrets([istio, gwApi, pod('gw-1', 'istio-system', { istio: 'ingressgateway' }), pod('gw-2', 'edge', { istio: 'ingressgateway' }), pod('app', 'shop', { app: 'x' })]);
  // An Istio credential comes with its `-cacert` companion (MUTUAL's CA certificates may live there).
  assert.deepEqual([...got].sort(), ['certs/other-ns', 'edge/shop-cert', 'edge/shop-cert-cacert', 'istio-system/shop-cert', 'istio-system/shop-cert-cacert', 'web/own']);
  assert.deepEqual([...referencedSecrets([istio])], [], 'no selected pod, no reference');
});

test('servedVersion: the preferred version Ambit reads that an established CRD serves', () => {
  const vs = KINDS.find((k) => k.kind === 'VirtualService')!;
  const crd = (versions: Array<[string, boolean]>, established = true): KubeObject => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: crdName(vs) },
    spec: { versions: versions.map(([name, served]) => ({ name, served })) },
    status: { conditions: [{ type: 'Established', status: established ? 'True' : 'False' }] },
  });
  assert.equal(servedVersion(crd([['v1alpha3', true], ['v1beta1', true], ['v1', true]]), vs), 'v1');
  assert.equal(servedVersion(crd([['v1alpha3', true], ['v1beta1', true], ['v1', false]]), vs), 'v1beta1');
  assert.equal(servedVersion(crd([['v2', true]]), vs), undefined);
  assert.equal(servedVersion(crd([['v1', true]], false), vs), undefined, 'not established yet');
});

test('paths of a kind and its CRD name', () => {
  const ap = KINDS.find((k) => k.kind === 'AuthorizationPolicy')!;
  assert.equal(crdName(ap), 'authorizationpolicies.security.istio.io');
  assert.equal(collectionPath(resourceOf(ap)), '/apis/security.istio.io/v1/authorizationpolicies');
  assert.equal(objectPath(resourceOf(ap), 'demo', 'x', 'status'), '/apis/security.istio.io/v1/namespaces/demo/authorizationpolicies/x/status');
  const node = KINDS.find((k) => k.kind === 'Node')!;
  assert.equal(objectPath(resourceOf(node), 'ignored', 'n1'), '/api/v1/nodes/n1');
});
