/**
 * Conditions as Kubernetes objects carry them (pure): building them with their transition time
 * kept while the status does not change, merging several findings of one type into one
 * condition, and replacing only the condition types this controller owns in a list others write
 * to as well.
 */
import { asArray, asRecord, asString } from '../translate/util.js';

export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** A finding about an object: what becomes one condition. */
export interface Finding {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/** A condition as written (metav1.Condition; Istio's IstioCondition has the same fields). */
export interface Condition extends Finding {
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** Longest message written (metav1.Condition allows 32768). */
const MAX_MESSAGE = 4096;
/** Istio and Gateway API reasons are CamelCase words; anything else is made one. */
const REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;

export function cleanReason(reason: string): string {
  if (REASON.test(reason)) return reason;
  const words = reason.replace(/[^A-Za-z0-9]+/g, ' ').trim().split(' ').filter(Boolean);
  const camel = words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
  return REASON.test(camel) ? camel : 'Unknown';
}

function clip(message: string): string {
  return message.length <= MAX_MESSAGE ? message : `${message.slice(0, MAX_MESSAGE - 3)}...`;
}

/**
 * One finding per type: several findings of a type become one, False if any is False (its
 * reason), else the first reason that is not the plain type name; messages joined in order.
 */
export function mergeFindings(findings: readonly Finding[]): Finding[] {
  const byType = new Map<string, Finding[]>();
  for (const f of findings) byType.set(f.type, [...(byType.get(f.type) ?? []), f]);
  const out: Finding[] = [];
  for (const [type, list] of byType) {
    const negative = list.find((f) => f.status === 'False') ?? list.find((f) => f.status === 'Unknown');
    const lead = negative ?? list.find((f) => f.reason !== type) ?? list[0]!;
    const messages = [...new Set((negative ? list.filter((f) => f.status !== 'True') : list).map((f) => f.message).filter(Boolean))];
    out.push({ type, status: lead.status, reason: lead.reason, message: messages.join('; ') });
  }
  return out;
}

/** Conditions from findings, keeping each previous condition's transition time while its status stays. */
export function toConditions(findings: readonly Finding[], previous: unknown, now: string, generation: number | undefined): Condition[] {
  const prev = new Map(asArray(previous).map(asRecord).map((c) => [asString(c['type']) ?? '', c]));
  return findings.map((f) => {
    const old = prev.get(f.type);
    const same = old !== undefined && old['status'] === f.status && typeof old['lastTransitionTime'] === 'string';
    return {
      type: f.type,
      status: f.status,
      reason: cleanReason(f.reason),
      message: clip(f.message),
      lastTransitionTime: same ? (old['lastTransitionTime'] as string) : now,
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
    };
  });
}

/** `existing` with every condition of an `owned` type replaced by `ours` (others' conditions kept, in place). */
export function replaceOwned(existing: unknown, owned: ReadonlySet<string>, ours: readonly Condition[]): Array<Record<string, unknown>> {
  const kept = asArray(existing).map(asRecord).filter((c) => !owned.has(asString(c['type']) ?? ''));
  return [...kept, ...ours.map((c) => ({ ...c }))];
}
