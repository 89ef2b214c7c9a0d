/**
 * Service lookup micro-benchmark (no netns, no root): WorkloadIndex.serviceByVip over `--vips`
 * Services with one VIP each and `--ranges` ServiceEntry-style Services with one CIDR each
 * (/24s, every 16th also a /16, every 64th a /20), for a VIP hit, a range hit and a miss.
 *   node dist/bench/range-lookup-micro.js [--lookups 1000000] [--vips 10000] [--ranges 10000]
 * Prints one JSON line: ns per lookup of each kind. Bounded by its lookup count.
 */
import { parseArgs } from 'node:util';
import type { Service } from '../src/shared/model.js';
import { WorkloadIndex } from '../src/shared/state/workloads.js';

function svc(name: string, vips: string[], vipRanges?: string[]): Service {
  return { name, namespace: 'bench', hostname: `${name}.example.com`, vips, ...(vipRanges ? { vipRanges } : {}), ports: [{ name: 'tcp', port: 5432, targetPort: 5432, protocol: 'tcp' }], subjectAltNames: [], routingPreference: [], endpoints: [] };
}

function main(): void {
  const { values } = parseArgs({ options: { lookups: { type: 'string', default: '1000000' }, vips: { type: 'string', default: '10000' }, ranges: { type: 'string', default: '10000' } } });
  const lookups = Math.min(Number(values.lookups), 10_000_000);
  const nVips = Number(values.vips);
  const nRanges = Number(values.ranges);
  const services = new Map<string, Service>();
  for (let i = 0; i < nVips; i++) services.set(`bench/v${i}`, svc(`v${i}`, [`10.96.${(i >> 8) & 255}.${i & 255}`]));
  for (let i = 0; i < nRanges; i++) {
    const ranges = [`100.${(i >> 8) & 63}.${i & 255}.0/24`];
    if (i % 16 === 0) ranges.push(`101.${i & 255}.0.0/16`);
    if (i % 64 === 0) ranges.push(`102.${i & 255}.${((i >> 8) & 15) * 16}.0/20`);
    services.set(`bench/r${i}`, svc(`r${i}`, [], ranges));
  }
  const built = process.hrtime.bigint();
  const index = new WorkloadIndex({ workloads: new Map(), services, authorizations: new Map() });
  const buildMs = Number(process.hrtime.bigint() - built) / 1e6;
  const run = (ip: (i: number) => string): number => {
    const ips = Array.from({ length: 1024 }, (_, i) => ip(i));
    let found = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < lookups; i++) if (index.serviceByVip(ips[i & 1023]!, 5432)) found++;
    const ns = Number(process.hrtime.bigint() - t0) / lookups;
    if (found === -1) console.log(found);
    return Math.round(ns);
  };
  const vipHit = run((i) => `10.96.${(i >> 8) & 3}.${i & 255}`);
  const rangeHit = run((i) => `100.${(i >> 8) & 3}.${i & 255}.${(i * 7) & 255}`);
  const miss = run((i) => `203.0.${(i >> 8) & 3}.${i & 255}`);
  console.log(JSON.stringify({ vips: nVips, ranges: nRanges, lookups, buildMs: Math.round(buildMs), nsPerLookup: { vipHit, rangeHit, miss } }));
}

main();
