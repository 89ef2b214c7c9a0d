/** The DNS codec: header, questions, A/AAAA/CNAME, compression on read, EDNS size, TC, and bad bytes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CLASS_IN,
  DnsParseError,
  EDNS_PAYLOAD,
  OPCODE_UPDATE,
  RCODE_FORMERR,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
  TYPE_OPT,
  TYPE_TXT,
  UDP_PLAIN_MAX,
  errorResponse,
  parseMessage,
  peekHeader,
  queryTypeName,
  serializeForUdp,
  serializeMessage,
  udpLimit,
  type DnsMessage,
} from '../../../src/shared/dns/message.js';
import { Rng } from '../../helpers/fuzz.js';

function query(name: string, type = TYPE_A, opts: { id?: number; edns?: number; opcode?: number } = {}): DnsMessage {
  return {
    header: { id: opts.id ?? 0x1234, qr: false, opcode: opts.opcode ?? 0, aa: false, tc: false, rd: true, ra: false, z: 0, rcode: 0 },
    questions: [{ name, type, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: opts.edns !== undefined ? [{ name: '', type: TYPE_OPT, class: opts.edns, ttl: 0, data: Buffer.alloc(0) }] : [],
  };
}

test('a query serializes to the RFC 1035 bytes and parses back', () => {
  const wire = serializeMessage(query('api.example.com'));
  assert.equal(
    wire.toString('hex'),
    '12340100' + '0001000000000000' + '03617069076578616d706c6503636f6d00' + '00010001',
    'id, RD, one question, labels with lengths, type A class IN',
  );
  const back = parseMessage(wire);
  assert.deepEqual(back, query('api.example.com'));
  assert.deepEqual(parseMessage(serializeMessage(back)), back, 'round trip is stable');
});

test('names are lowercased and the root name is ""', () => {
  const wire = serializeMessage(query('API.Example.COM'));
  assert.equal(parseMessage(wire).questions[0]!.name, 'api.example.com');
  assert.equal(parseMessage(serializeMessage(query(''))).questions[0]!.name, '');
});

test('A, AAAA and CNAME answers round-trip; other records keep their raw data', () => {
  const m: DnsMessage = {
    ...query('www.example.com'),
    header: { ...query('x').header, qr: true, aa: true, ra: true },
    answers: [
      { name: 'www.example.com', type: TYPE_CNAME, class: CLASS_IN, ttl: 30, data: 'example.com' },
      { name: 'example.com', type: TYPE_A, class: CLASS_IN, ttl: 30, data: '240.240.1.2' },
      { name: 'example.com', type: TYPE_AAAA, class: CLASS_IN, ttl: 30, data: '2001:db8::1' },
      { name: 'example.com', type: TYPE_TXT, class: CLASS_IN, ttl: 7, data: Buffer.from('\x05hello', 'latin1') },
    ],
  };
  const back = parseMessage(serializeMessage(m));
  assert.deepEqual(back, m);
  assert.equal(back.header.qr, true);
  assert.equal(back.header.aa, true);
});

test('compressed names are followed on read', () => {
  // Question example.com at offset 12; the answer's name is a pointer to it (0xc00c), and its
  // CNAME data is "www" + pointer.
  const q = Buffer.from('07' + '6578616d706c65' + '03636f6d00' + '00050001', 'hex');
  const ans = Buffer.from('c00c' + '0005' + '0001' + '0000001e' + '0006' + '03777777c00c', 'hex');
  const head = Buffer.from('abcd8180' + '0001000100000000', 'hex');
  const m = parseMessage(Buffer.concat([head, q, ans]));
  assert.equal(m.answers[0]!.name, 'example.com');
  assert.equal(m.answers[0]!.data, 'www.example.com');
  assert.equal(m.header.rcode, 0);
  assert.equal(m.header.ra, true);
});

test('pointer loops, forward pointers, cut-off data and reserved label types are DnsParseError with the id', () => {
  const head = (qd: number): string => `beef0100${qd.toString(16).padStart(4, '0')}000000000000`;
  const cases: Array<[string, RegExp]> = [
    [head(1) + 'c00c00010001', /points forward/],
    [head(1) + '03777777c00c00010001', /longer than 255|loop/],
    [head(1) + '03777777', /past the end/],
    [head(1) + '0377777700' + '0001', /cut off/],
    [head(1) + '4100', /label type/],
    [head(1) + 'c0', /cut off/],
  ];
  for (const [hex, re] of cases) {
    assert.throws(
      () => parseMessage(Buffer.from(hex, 'hex')),
      (e: unknown) => e instanceof DnsParseError && re.test(e.message) && e.id === 0xbeef,
      hex,
    );
  }
  assert.throws(() => parseMessage(Buffer.from('0102', 'hex')), DnsParseError);
  assert.equal(peekHeader(Buffer.alloc(11)), undefined);
});

test('a name over 255 bytes is refused', () => {
  const label = '3f' + '61'.repeat(63);
  const hex = 'beef01000001000000000000' + label.repeat(5) + '00' + '00010001';
  assert.throws(() => parseMessage(Buffer.from(hex, 'hex')), /longer than 255/);
});

test('random bytes never throw anything but DnsParseError', () => {
  const seed = serializeMessage(query('a.b.example.com', TYPE_AAAA, { edns: 4096 }));
  const rng = new Rng(0xd15);
  for (let i = 0; i < 2000; i++) {
    // Mutated copies of a real query (flipped bytes, cut short) and pure noise.
    const bytes = i % 4 === 0 ? rng.bytes(rng.int(64)) : Buffer.from(seed.subarray(0, 1 + rng.int(seed.length)));
    for (let k = 0; k < 3; k++) if (bytes.length > 0) bytes[rng.int(bytes.length)] = rng.int(256);
    try {
      parseMessage(bytes);
    } catch (e) {
      assert.ok(e instanceof DnsParseError, `unexpected ${String(e)}`);
    }
  }
});

test('the EDNS payload size sets the UDP limit; without EDNS it is 512', () => {
  assert.equal(udpLimit(query('x')), UDP_PLAIN_MAX);
  assert.equal(udpLimit(query('x', TYPE_A, { edns: 4096 })), EDNS_PAYLOAD, 'capped at what the proxy announces');
  assert.equal(udpLimit(query('x', TYPE_A, { edns: 100 })), UDP_PLAIN_MAX, 'never below 512');
  assert.equal(udpLimit(query('x', TYPE_A, { edns: 800 })), 800);
  const opt = parseMessage(serializeMessage(query('x', TYPE_A, { edns: 1400 }))).additionals[0]!;
  assert.equal(opt.type, TYPE_OPT);
  assert.equal(opt.class, 1400, 'the OPT record keeps the requester size');
});

test('a UDP answer bigger than the limit is truncated with TC and keeps its OPT', () => {
  const big: DnsMessage = { ...query('many.example.com'), header: { ...query('x').header, qr: true } };
  for (let i = 0; i < 40; i++) big.answers.push({ name: 'many.example.com', type: TYPE_A, class: CLASS_IN, ttl: 30, data: `240.240.0.${i}` });
  const fits = serializeForUdp(big, 65535);
  assert.equal(parseMessage(fits).answers.length, 40);
  assert.ok(fits.length > UDP_PLAIN_MAX);
  const cut = parseMessage(serializeForUdp(big, UDP_PLAIN_MAX));
  assert.equal(cut.header.tc, true);
  assert.equal(cut.answers.length, 0);
  assert.deepEqual(cut.questions, big.questions);
  const withOpt = { ...big, additionals: [{ name: '', type: TYPE_OPT, class: EDNS_PAYLOAD, ttl: 0, data: Buffer.alloc(0) }] };
  const cut2 = parseMessage(serializeForUdp(withOpt, UDP_PLAIN_MAX));
  assert.equal(cut2.header.tc, true);
  assert.equal(cut2.additionals[0]!.type, TYPE_OPT);
});

test('error responses echo id, opcode, RD and the question', () => {
  const r = parseMessage(serializeMessage(errorResponse({ id: 7, opcode: OPCODE_UPDATE, rd: true, questions: [{ name: 'x', type: 1, class: 1 }] }, RCODE_FORMERR)));
  assert.equal(r.header.id, 7);
  assert.equal(r.header.qr, true);
  assert.equal(r.header.opcode, OPCODE_UPDATE);
  assert.equal(r.header.rd, true);
  assert.equal(r.header.rcode, RCODE_FORMERR);
  assert.equal(r.questions[0]!.name, 'x');
});

test('query type names are ztunnel lowercase labels, bounded', () => {
  assert.equal(queryTypeName(TYPE_A), 'a');
  assert.equal(queryTypeName(TYPE_AAAA), 'aaaa');
  assert.equal(queryTypeName(33), 'srv');
  assert.equal(queryTypeName(99), 'type99');
});

test('writing refuses a bad address or label instead of sending garbage', () => {
  const m = { ...query('x'), answers: [{ name: 'x', type: TYPE_A, class: CLASS_IN, ttl: 1, data: '::1' }] };
  assert.throws(() => serializeMessage(m), /not an IPv4/);
  assert.throws(() => serializeMessage(query('a..b')), /1-63 bytes/);
});
