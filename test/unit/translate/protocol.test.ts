import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectPortProtocol } from '../../../src/controller/translate/protocol.js';
import { isHttpProtocol, upstreamUsesHttp2 } from '../../../src/waypoint/protocol.js';

test('Istio protocol selection (table): one detector for agents and waypoints, grpc-web by prefix as pilot reads it', () => {
  const cases: Array<[Parameters<typeof detectPortProtocol>[0], string]> = [
    [{ name: 'http' }, 'http'],
    [{ name: 'http-web' }, 'http'],
    [{ name: 'http2' }, 'http2'],
    [{ name: 'grpc' }, 'grpc'],
    [{ name: 'grpc-api' }, 'grpc'],
    [{ name: 'grpc-web' }, 'grpc-web'],
    [{ name: 'grpc-web-ui' }, 'grpc-web'],
    [{ name: 'grpc-webx' }, 'grpc-web'],
    [{ name: 'GRPC-Web' }, 'grpc-web'],
    [{ name: 'grpcweb' }, 'tcp'],
    [{ name: 'tcp-db' }, 'tcp'],
    [{ name: 'web' }, 'tcp'],
    [{ name: 'httpx' }, 'tcp'],
    [{}, 'tcp'],
    [{ name: 'tcp', appProtocol: 'http' }, 'http'],
    [{ name: 'http', appProtocol: 'grpc' }, 'grpc'],
    [{ name: 'x', appProtocol: 'kubernetes.io/h2c' }, 'http2'],
    [{ name: 'http', appProtocol: 'made-up' }, 'http'],
    [{ name: 'http', protocol: 'UDP' }, 'udp'],
    [{ name: 'HTTP' }, 'http'],
  ];
  for (const [port, want] of cases) assert.equal(detectPortProtocol(port), want, JSON.stringify(port));
});

test('which protocols the waypoint handles as HTTP and when the upstream leg is HTTP/2', () => {
  assert.deepEqual(['http', 'http2', 'grpc', 'grpc-web', 'tcp', 'tls', 'mysql'].map(isHttpProtocol), [true, true, true, true, false, false, false]);
  assert.equal(upstreamUsesHttp2('grpc', false, undefined), true);
  assert.equal(upstreamUsesHttp2('http', true, 'text/plain'), false);
  assert.equal(upstreamUsesHttp2('http', false, 'application/grpc'), true);
  assert.equal(upstreamUsesHttp2('tcp', true, undefined), false, 'undeclared: HTTP/1.1, which every server speaks');
  assert.equal(upstreamUsesHttp2(undefined, true, 'application/grpc+proto'), true);
  assert.equal(upstreamUsesHttp2(undefined, false, 'application/grpc-web'), false);
});

