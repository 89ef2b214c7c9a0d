import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evalAccessFilter, parseAccessFilter, AccessFilterError } from '../../src/shared/access-filter.js';

const request: Record<string, unknown> = {
  'request.method': 'POST',
  'request.path': '/api/v1/orders?id=7',
  'request.url_path': '/api/v1/orders',
  'request.host': 'orders.shop',
  'request.headers': new Map([['x-debug', 'on'], ['user-agent', 'curl/8']]),
  'request.duration': 250,
  'request.size': 12,
  'response.code': 503,
  'response.flags': 'UF',
};
const holds = (text: string): boolean => evalAccessFilter(parseAccessFilter(text), (n) => request[n]);

test('access-log filter expressions: comparisons, logic, strings, maps, lists, functions', () => {
  const yes = [
    'response.code >= 500',
    'response.code == 503 && request.method == "POST"',
    "request.headers['x-debug'] == 'on'",
    "'x-debug' in request.headers",
    'response.code in [502, 503, 504]',
    "request.url_path.startsWith('/api/') && request.path.endsWith('id=7')",
    "request.host.contains('shop') || false",
    "request.url_path.matches('^/api/v[0-9]+/')",
    'request.duration > duration("100ms")',
    '!(response.code < 400)',
    "has(request.headers['x-debug']) && !has(request.headers['x-missing'])",
    'size(request.url_path) == 14 && int("12") == request.size && string(response.code) == "503"',
    "request.headers['x-missing'] == 'a' || response.code == 503",
    '-1 < 0',
  ];
  for (const e of yes) assert.equal(holds(e), true, e);
  const no = [
    'response.code < 500',
    "request.headers['x-missing'] == 'a'",
    "request.headers['x-missing'] == 'a' && response.code == 503",
    'response.code == "503"',
    'response.code > "5"',
    'request.duration > duration("1s")',
    "response.flags == 'NR'",
  ];
  for (const e of no) assert.equal(holds(e), false, e);
});

test('access-log filter expressions: problems are named, with where they are', () => {
  const bad: Array<[string, RegExp]> = [
    ['response.code >=', /unexpected the end/],
    ['response.code >= 500 500', /unexpected "500" after a complete expression/],
    ['connection.mtls', /attribute connection\.mtls is not supported/],
    ['request.path.lower()', /unknown method lower\(\)/],
    ['now() > 1', /unknown function now\(\)/],
    ["request.method == 'POST", /unterminated string starting at offset 18/],
    ['response.code # 1', /unexpected character "#" at offset 14/],
    ['duration("soon") > request.duration', /duration\(\) takes a string such as/],
    ['(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))', /nested too deeply/],
  ];
  for (const [text, want] of bad) assert.throws(() => parseAccessFilter(text), (e: unknown) => e instanceof AccessFilterError && want.test(e.message), text);
});
