/** The hand-written client codecs (src/shared/api/wire.ts) against protobufjs through the .proto files. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../../src/shared/api/load.js';
import { configServiceDefinition } from '../../../src/shared/xds/proto.js';
import {
  decodeCertificateResponse,
  decodeDeltaConfigResponse,
  encodeCertificateRequest,
  encodeDeltaConfigRequest,
  type DeltaConfigRequestInput,
} from '../../../src/shared/api/wire.js';

const delta = (): grpc.MethodDefinition<unknown, unknown> => configServiceDefinition()['DeltaConfig']!;
const ca = (): grpc.MethodDefinition<unknown, unknown> =>
  (loadProto('ca.proto') as unknown as { istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } } }).istio.v1.auth.IstioCertificateService.service[
    'CreateCertificate'
  ]!;

test('DeltaConfigRequest: what the codec encodes, protobufjs decodes to the same message', () => {
  const requests: DeltaConfigRequestInput[] = [
    {},
    {
      node: { id: 'agent~n1', nodeName: 'n1', role: 'ROLE_AGENT', metadata: { captureMode: 'bpf', clusterId: 'c-é' } },
      typeUrl: 'type.ambit.io/Workload',
      resourceNamesSubscribe: ['*', 'a/b'],
      resourceNamesUnsubscribe: ['x'],
      initialResourceVersions: { 'ns/w1': 'v1', 'ns/w2': '' },
      responseNonce: 'n-42',
      errorDetail: { code: -3, message: 'rejected' },
      status: { workloads: [{ uid: 'u1', captured: true, mode: 'bpf', message: '' }, { uid: 'u2', captured: false }] },
    },
    { node: { role: 3 }, errorDetail: { code: 2 ** 31 - 1 } },
  ];
  for (const r of requests) {
    const ours = delta().requestDeserialize(encodeDeltaConfigRequest(r));
    const theirs = delta().requestDeserialize(delta().requestSerialize(r));
    assert.deepEqual(ours, theirs);
  }
});

test('DeltaConfigResponse: the codec decodes what protobufjs encodes, defaults filled the same way', () => {
  const responses = [
    {},
    {
      systemVersionInfo: 'v7',
      typeUrl: 'type.ambit.io/Service',
      resources: [
        { name: 'ns/a', version: '3', body: Buffer.from('{"x":1}') },
        { name: 'ns/b', version: '', body: Buffer.alloc(0) },
        { name: 'ns/c' },
      ],
      removedResources: ['ns/old', 'ns/older'],
      nonce: 'n1',
    },
  ];
  for (const r of responses) {
    const bytes = delta().responseSerialize(r);
    const ours = decodeDeltaConfigResponse(bytes);
    const theirs = delta().responseDeserialize(bytes) as typeof ours;
    const { wireBytes, ...decoded } = ours;
    assert.equal(wireBytes, bytes.length, 'the decoder notes the size on the wire');
    assert.deepEqual(decoded, theirs);
    for (const [i, res] of ours.resources.entries()) assert.ok(Buffer.isBuffer(res.body) && res.body.equals(theirs.resources[i]!.body));
  }
});

test('certificate request and response match protobufjs, Struct metadata included', () => {
  const req = {
    csr: '-----BEGIN CERTIFICATE REQUEST-----\nMII\n-----END CERTIFICATE REQUEST-----\n',
    validityDuration: 86_400 * 365 * 100,
    metadata: {
      fields: {
        ImpersonatedIdentity: { stringValue: 'spiffe://cluster.local/ns/a/sa/b' },
        n: { numberValue: 1.5 },
        b: { boolValue: false },
        z: { nullValue: 'NULL_VALUE' },
        s: { structValue: { fields: { k: { stringValue: 'v' } } } },
        l: { listValue: { values: [{ numberValue: -2 }, { stringValue: '' }] } },
      },
    },
  };
  assert.deepEqual(ca().requestDeserialize(encodeCertificateRequest(req)), ca().requestDeserialize(ca().requestSerialize(req)));
  for (const res of [{}, { certChain: ['leaf', 'root'] }]) {
    const bytes = ca().responseSerialize(res);
    assert.deepEqual(decodeCertificateResponse(bytes), ca().responseDeserialize(bytes));
  }
});

test('unknown fields are skipped and malformed messages throw instead of returning garbage', () => {
  // Field 9 (varint), field 10 (fixed64), field 11 (fixed32) before a known field: skipped.
  const withUnknown = Buffer.concat([Buffer.from([0x48, 0x96, 0x01, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5d, 1, 2, 3, 4]), Buffer.from([0x2a, 0x02]), Buffer.from('ok')]);
  assert.equal(decodeDeltaConfigResponse(withUnknown).nonce, 'ok');
  assert.throws(() => decodeDeltaConfigResponse(Buffer.from([0x2a, 0x05, 0x61])), /past the end/); // length 5, 1 byte left
  assert.throws(() => decodeDeltaConfigResponse(Buffer.from([0x2a])), /truncated varint/);
  assert.throws(() => decodeDeltaConfigResponse(Buffer.from([0x28, 0x01])), /wire type 0, expected 2/); // nonce as a varint
  assert.throws(() => decodeCertificateResponse(Buffer.from([0x13])), /unsupported wire type 3/); // field 2 as a group
  assert.throws(() => decodeDeltaConfigResponse(Buffer.alloc(11, 0xff)), /longer than 10 bytes/);
  assert.throws(() => encodeDeltaConfigRequest({ node: { role: 'ROLE_NOPE' } }), /unknown Role "ROLE_NOPE"/);
});
