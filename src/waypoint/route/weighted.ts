/** Picks one item by integer weights with an injected random source (so tests can seed it). */

/** A uniform random number in [0, 1). */
export type RandomSource = () => number;

/**
 * Returns the item whose cumulative weight range holds floor(random() * total); items with weight 0
 * are never picked. Undefined when the list is empty or every weight is 0.
 */
export function pickWeighted<T extends { weight: number }>(items: readonly T[], random: RandomSource): T | undefined {
  let total = 0;
  for (const it of items) total += Math.max(0, Math.trunc(it.weight));
  if (total === 0) return undefined;
  let n = Math.floor(random() * total);
  if (n >= total) n = total - 1;
  for (const it of items) {
    const w = Math.max(0, Math.trunc(it.weight));
    if (n < w) return it;
    n -= w;
  }
  return undefined;
}

/** A small seeded PRNG (mulberry32) for tests and reproducible runs. */
export function seededRandom(seed: number): RandomSource {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
