/** What a config stream must send to move a subscriber from the versions it holds to the next set. */

export interface Delta {
  /** Names new or changed (sorted). */
  updated: string[];
  /** Names the subscriber holds that no longer exist (sorted). */
  removed: string[];
}

/** Pure: compares name→version maps; a name whose version differs or is new is updated. */
export function computeDelta(prev: ReadonlyMap<string, string>, next: ReadonlyMap<string, { version: string }>): Delta {
  const updated: string[] = [];
  const removed: string[] = [];
  for (const [name, r] of next) if (prev.get(name) !== r.version) updated.push(name);
  for (const name of prev.keys()) if (!next.has(name)) removed.push(name);
  updated.sort();
  removed.sort();
  return { updated, removed };
}

export function isEmptyDelta(d: Delta): boolean {
  return d.updated.length === 0 && d.removed.length === 0;
}
