import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ISTIO_DEFAULT_TEXT_FORMAT, parseAccessLogFormat, renderLabels, renderText, unsupportedOperators, type AccessLogRecord } from '../../src/shared/access-log-format.js';

const record: AccessLogRecord = {
  startMs: Date.parse('2026-12-04T01:02:03.004Z'),
  method: 'POST',
  path: '/api?q=1',
  authority: 'shop.example.com',
  protocol: 'HTTP/1.1',
  status: 503,
  flags: 'UF',
  bytesReceived: 12,
  bytesSent: 34,
  durationMs: 5.6,
  requestHeader: (n) => ({ 'x-request-id': 'abc-123', 'user-agent': 'curl/8.0', 'x-envoy-original-path': undefined })[n],
  responseHeader: (n) => (n === 'x-envoy-upstream-service-time' ? '4' : undefined),
  upstreamHost: '10.0.0.5:8080',
  upstreamCluster: 'outbound|8080||shop.svc',
  downstreamRemote: '10.0.0.9:41000',
  route: 'default',
};

test("access-log formats: Istio's default text line, fallbacks, truncation, missing values, %% escapes", () => {
  const parts = parseAccessLogFormat(ISTIO_DEFAULT_TEXT_FORMAT);
  assert.deepEqual(unsupportedOperators(parts), [], 'every operator of the default format renders');
  assert.equal(
    renderText(parts, record),
    '[2026-12-04T01:02:03.004Z] "POST /api?q=1 HTTP/1.1" 503 UF - - "-" 12 34 6 4 "-" "curl/8.0" "abc-123" "shop.example.com" "10.0.0.5:8080" outbound|8080||shop.svc - - 10.0.0.9:41000 - default\n',
  );
  assert.equal(renderText(parseAccessLogFormat('%REQ(USER-AGENT):4% 100%% %RESPONSE_CODE%'), record), 'curl 100% 503\n');
  assert.deepEqual(unsupportedOperators(parseAccessLogFormat('%DOWNSTREAM_PEER_URI_SAN% %FILTER_STATE(x)% %RESPONSE_CODE%')), ['DOWNSTREAM_PEER_URI_SAN', 'FILTER_STATE']);
  assert.equal(renderText(parseAccessLogFormat('%DOWNSTREAM_PEER_URI_SAN%'), record), '-\n', 'an operator without a value renders -');
  assert.throws(() => parseAccessLogFormat('%RESPONSE_CODE'), /operator opened at offset 0 is not closed/);
  assert.throws(() => parseAccessLogFormat('a %not an op% b'), /"%not an op%" at offset 2 is not a command operator/);
});

test('access-log formats: labels give a JSON object whose one-operator values keep their type', () => {
  const line = renderLabels([['code', parseAccessLogFormat('%RESPONSE_CODE%')], ['id', parseAccessLogFormat('%REQ(X-REQUEST-ID)%')], ['none', parseAccessLogFormat('%REQ(X-NOPE)%')], ['mixed', parseAccessLogFormat('%REQ(:METHOD)% %REQ(:PATH)%')]], record);
  assert.ok(line.endsWith('\n'));
  assert.deepEqual(JSON.parse(line), { code: 503, id: 'abc-123', none: null, mixed: 'POST /api?q=1' });
});
