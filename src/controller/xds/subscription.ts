/**
 * One subscriber's subscription to one resource type, and its ACK/NACK state machine.
 *
 * Invariants:
 * - At most one response is in flight; a change arriving meanwhile marks the type dirty and is
 *   pushed when the ACK/NACK comes back. So `sent` is always exactly what the subscriber holds
 *   once the in-flight response is answered.
 * - `sent` is what the subscriber holds: set from initial_resource_versions on (re)subscribe,
 *   advanced when a response is written, reverted to the previous map on NACK (the client keeps
 *   its last good config).
 */
import { AmbitError } from '../../shared/errors.js';
import type { ResourceType } from '../../shared/resources.js';
import { isRecord } from '../../shared/validate.js';
import type { DeltaConfigRequestMessage, DeltaConfigResponseMessage } from '../../shared/xds/proto.js';
import { setVersion, type EncodedResource } from '../../shared/xds/resource-codec.js';
import { computeDelta, isEmptyDelta, type Delta } from './delta.js';
import { factsOf } from './snapshot.js';
import type { NackRecord, TypeSubscriptionState } from './status.js';

const MAX_INITIAL_VERSIONS = 200_000;
const MAX_NAMES_PER_REQUEST = 100_000;
const MAX_MESSAGE_CHARS = 4096;

interface InFlight {
  nonce: string;
  version: string;
  prevSent: ReadonlyMap<string, string>;
  /** notify() time of the change this push carries; undefined for subscription-driven pushes. */
  notifiedAt: number | undefined;
}

export interface TypeSub {
  typeUrl: ResourceType;
  wildcard: boolean;
  names: Set<string>;
  sent: ReadonlyMap<string, string>;
  targetVersion: string;
  inflight: InFlight | undefined;
  dirty: boolean;
  dirtyNotifiedAt: number | undefined;
  ackedVersion: string | undefined;
  lastAckAt: number | undefined;
  lastNack: NackRecord | undefined;
  lastReplyWasNack: boolean;
  nackCount: number;
}

/**
 * Set versions by the map they were computed from (these maps are not changed once built): the
 * subscribers of one scope share one `next` map per push round, and proxy-status and waitForSync
 * read every subscriber's `sent` version on each ACK, so each is sorted and hashed once.
 */
const setVersions = new WeakMap<ReadonlyMap<string, unknown>, string>();

/** name → version of a `next` map, built once per map (shared by its subscribers; never changed). */
const versionMaps = new WeakMap<ReadonlyMap<string, EncodedResource>, ReadonlyMap<string, string>>();

/** The delta between a held map and a `next` map, computed once per pair: subscribers that held the same set share it. */
const deltas = new WeakMap<ReadonlyMap<string, string>, WeakMap<ReadonlyMap<string, EncodedResource>, Delta>>();

function deltaOf(sent: ReadonlyMap<string, string>, next: ReadonlyMap<string, EncodedResource>): Delta {
  let byNext = deltas.get(sent);
  if (!byNext) deltas.set(sent, (byNext = new WeakMap()));
  let d = byNext.get(next);
  // Holding exactly the versions of `next` (a type the change did not touch): nothing to send.
  if (!d) byNext.set(next, (d = versionMaps.get(next) === sent ? { updated: [], removed: [] } : computeDelta(sent, next)));
  return d;
}

function versionOfSet(versions: ReadonlyMap<string, string>): string {
  let v = setVersions.get(versions);
  if (v === undefined) setVersions.set(versions, (v = setVersion(versions)));
  return v;
}

/** The subscription a first request of a type opens; the client says what it holds already. */
export function newTypeSub(type: ResourceType, subscribe: string[], initial: unknown, previous: TypeSub | undefined): TypeSub {
  const sent = new Map<string, string>();
  if (isRecord(initial)) {
    const entries = Object.entries(initial);
    if (entries.length > MAX_INITIAL_VERSIONS) {
      throw new AmbitError('AMBIT_ERR_XDS_STREAM', `initial_resource_versions has ${entries.length} entries, more than ${MAX_INITIAL_VERSIONS}`);
    }
    for (const [name, version] of entries) if (typeof version === 'string') sent.set(name, version);
  }
  const wildcard = subscribe.length === 0 || subscribe.includes('*');
  return {
    typeUrl: type,
    wildcard,
    names: new Set(subscribe.filter((n) => n !== '*')),
    sent,
    targetVersion: versionOfSet(sent),
    inflight: undefined,
    dirty: false,
    dirtyNotifiedAt: undefined,
    ackedVersion: undefined,
    lastAckAt: undefined,
    lastNack: previous?.lastNack,
    lastReplyWasNack: false,
    nackCount: previous?.nackCount ?? 0,
  };
}

/** A request's name list, bounded. */
export function boundedNames(v: unknown, field: string): string[] {
  if (!Array.isArray(v)) return [];
  if (v.length > MAX_NAMES_PER_REQUEST) throw new AmbitError('AMBIT_ERR_XDS_STREAM', `${field} has ${v.length} names, more than ${MAX_NAMES_PER_REQUEST}`);
  return v.filter((n): n is string => typeof n === 'string');
}

/** Applies subscribe/unsubscribe lists; returns whether the subscription changed. */
export function applySubscriptionChange(ts: TypeSub, subscribe: string[], unsubscribe: string[]): boolean {
  let changed = false;
  for (const n of subscribe) {
    if (n === '*') {
      if (!ts.wildcard) changed = ts.wildcard = true;
    } else if (!ts.names.has(n)) {
      ts.names.add(n);
      changed = true;
    }
  }
  for (const n of unsubscribe) {
    if (n === '*') {
      if (ts.wildcard) {
        ts.wildcard = false;
        changed = true;
      }
    } else if (ts.names.delete(n)) {
      changed = true;
    }
  }
  return changed;
}

/** What an ACK or NACK did: `nack` is set for a newly recorded rejection, `acked` for an ACK of the in-flight response. */
export interface ReplyOutcome {
  nack?: NackRecord;
  acked?: { version: string; notifiedAt: number | undefined };
  /** A push was waiting for this reply: send it now (its notify() time). */
  pushNow?: { notifiedAt: number | undefined };
}

/** Applies an ACK or NACK (a request carrying `response_nonce`) to the subscription. */
export function recordReply(ts: TypeSub, req: DeltaConfigRequestMessage, now: number, unknownCode: number): ReplyOutcome {
  const out: ReplyOutcome = {};
  const inflight = ts.inflight;
  const current = inflight !== undefined && inflight.nonce === req.responseNonce;
  if (req.errorDetail) {
    const message = String(req.errorDetail.message ?? '').slice(0, MAX_MESSAGE_CHARS);
    const code = Number.isInteger(req.errorDetail.code) ? req.errorDetail.code : unknownCode;
    if (current || ts.lastNack?.nonce !== req.responseNonce) {
      // A repeat of an already recorded NACK (status report) is not a new rejection.
      ts.nackCount++;
      ts.lastNack = { nonce: req.responseNonce, version: current ? inflight.version : 'unknown', code, message, at: now };
      out.nack = ts.lastNack;
    }
    if (!current) return out;
    ts.sent = inflight.prevSent;
    ts.inflight = undefined;
    ts.lastReplyWasNack = true;
  } else {
    if (!current) return out; // stale or repeated ACK (e.g. a status report)
    ts.ackedVersion = inflight.version;
    ts.lastAckAt = now;
    ts.inflight = undefined;
    ts.lastReplyWasNack = false;
    out.acked = { version: inflight.version, notifiedAt: inflight.notifiedAt };
  }
  if (ts.dirty) {
    out.pushNow = { notifiedAt: ts.dirtyNotifiedAt };
    ts.dirty = false;
    ts.dirtyNotifiedAt = undefined;
  }
  return out;
}

/**
 * The response that brings the subscriber from `sent` to `next` (undefined when nothing differs
 * and the push is not forced), marking it in flight. The caller writes it.
 */
export function nextResponse(ts: TypeSub, next: ReadonlyMap<string, EncodedResource>, o: { force: boolean; notifiedAt: number | undefined; nonce: () => string }): { response: DeltaConfigResponseMessage; updated: number; removed: number } | undefined {
  let nextVersions = versionMaps.get(next);
  const facts = nextVersions ? undefined : factsOf(next);
  if (facts) {
    // A view the encoder derived: its versions, set version and delta from the previous view are known.
    nextVersions = facts.versions;
    versionMaps.set(next, nextVersions);
    setVersions.set(next, facts.setVersion);
    if (facts.from) {
      let byNext = deltas.get(facts.from.versions);
      if (!byNext) deltas.set(facts.from.versions, (byNext = new WeakMap()));
      byNext.set(next, facts.from.delta);
    }
  }
  if (!nextVersions) {
    const built = new Map<string, string>();
    for (const [name, e] of next) built.set(name, e.version);
    versionMaps.set(next, (nextVersions = built));
  }
  let target = setVersions.get(next);
  if (target === undefined) setVersions.set(next, (target = setVersion(nextVersions)));
  setVersions.set(nextVersions, target);
  ts.targetVersion = target;
  const delta = deltaOf(ts.sent, next);
  if (!o.force && isEmptyDelta(delta)) return undefined;
  const nonce = o.nonce();
  const response: DeltaConfigResponseMessage = {
    systemVersionInfo: ts.targetVersion,
    typeUrl: ts.typeUrl,
    resources: delta.updated.map((name) => {
      const e = next.get(name) as EncodedResource;
      return { name, version: e.version, body: e.body };
    }),
    removedResources: [...delta.removed],
    nonce,
  };
  ts.inflight = { nonce, version: ts.targetVersion, prevSent: ts.sent, notifiedAt: o.notifiedAt };
  ts.sent = nextVersions;
  return { response, updated: delta.updated.length, removed: delta.removed.length };
}

/** A change to push while a response is in flight: remembered until the reply comes. */
export function markDirty(ts: TypeSub, notifiedAt: number | undefined): void {
  ts.dirty = true;
  ts.dirtyNotifiedAt ??= notifiedAt;
}

/** The subscriber holds the current target version, acknowledged, with nothing pending. */
export function isTypeSynced(ts: TypeSub): boolean {
  return !ts.inflight && !ts.dirty && !ts.lastReplyWasNack && ts.ackedVersion === ts.targetVersion;
}

/** The subscriber's last answer NACKed the current target version. */
export function isTypeNackedAtTarget(ts: TypeSub): boolean {
  return !ts.inflight && !ts.dirty && ts.lastReplyWasNack && ts.lastNack?.version === ts.targetVersion;
}

/** The subscription as proxy-status shows it. */
export function typeState(ts: TypeSub): TypeSubscriptionState {
  return {
    typeUrl: ts.typeUrl,
    wildcard: ts.wildcard,
    names: [...ts.names].sort(),
    sentVersion: versionOfSet(ts.sent),
    targetVersion: ts.targetVersion,
    ackedVersion: ts.ackedVersion,
    pending: ts.inflight?.nonce,
    resourceCount: ts.sent.size,
    lastAckAt: ts.lastAckAt,
    lastNack: ts.lastNack ? { ...ts.lastNack } : undefined,
    nackCount: ts.nackCount,
  };
}
