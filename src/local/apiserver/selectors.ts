/**
 * Label selectors (the `labelSelector` query grammar of apimachinery's labels.Parse, and
 * metav1.LabelSelector objects) and field selectors (`fieldSelector`, exact-match terms over the
 * fields a kind declares selectable). Parsing is strict: a selector that does not parse is a 400.
 */
import { badRequest } from './status.js';
import { isMap } from './types.js';

export type LabelOperator = 'exists' | '!' | '=' | '==' | '!=' | 'in' | 'notin' | 'gt' | 'lt';

export interface LabelRequirement {
  key: string;
  operator: LabelOperator;
  values: string[];
}

/** Parsed selector; an empty list matches every object. */
export interface LabelSelector {
  requirements: LabelRequirement[];
  /** True for a nil metav1.LabelSelector: matches nothing. */
  matchesNothing?: boolean;
}

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why a label key is not a qualified name, or undefined when it is one. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  let name = key;
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    name = key.slice(slash + 1);
    if (prefix.length === 0) return 'prefix part must be non-empty';
    if (prefix.length > 253) return 'prefix part must be no more than 253 characters';
    if (!DNS_SUBDOMAIN.test(prefix)) {
      return "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
    }
  }
  if (name.length === 0) return 'name part must be non-empty';
  if (name.length > 63) return 'name part must be no more than 63 characters';
  if (!NAME_PART.test(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
  }
  return undefined;
}

/** Why a label value is invalid, or undefined when it is valid. */
export function labelValueProblem(value: string): string | undefined {
  if (value.length > 63) return 'must be no more than 63 characters';
  if (!LABEL_VALUE.test(value)) {
    return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
  }
  return undefined;
}

type Token =
  | { t: 'id'; v: string }
  | { t: 'op'; v: '!' | '=' | '==' | '!=' | '(' | ')' | ',' | '>' | '<' }
  | { t: 'end' };

const SPECIAL = new Set(['!', '=', '(', ')', ',', '>', '<']);

function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (c === '!' && s[i + 1] === '=') {
      out.push({ t: 'op', v: '!=' });
      i += 2;
    } else if (c === '=' && s[i + 1] === '=') {
      out.push({ t: 'op', v: '==' });
      i += 2;
    } else if (SPECIAL.has(c)) {
      out.push({ t: 'op', v: c as '!' });
      i++;
    } else {
      let j = i;
      while (j < s.length && !SPECIAL.has(s[j]!) && !/\s/.test(s[j]!)) j++;
      out.push({ t: 'id', v: s.slice(i, j) });
      i = j;
    }
  }
  out.push({ t: 'end' });
  return out;
}

function parseError(detail: string): never {
  throw badRequest(`unable to parse requirement: ${detail}`);
}

function checkKey(key: string): void {
  const p = labelKeyProblem(key);
  if (p !== undefined) parseError(`key: Invalid value: ${JSON.stringify(key)}: ${p}`);
}

function checkValue(value: string): void {
  const p = labelValueProblem(value);
  if (p !== undefined) parseError(`values[0]: Invalid value: ${JSON.stringify(value)}: ${p}`);
}

/** Parses the `labelSelector` query form (`a=b,c in (x,y),!d,e`). */
export function parseLabelSelector(text: string): LabelSelector {
  const toks = tokenize(text);
  let p = 0;
  const peek = (): Token => toks[p]!;
  const next = (): Token => toks[p++]!;
  const reqs: LabelRequirement[] = [];
  /** A (possibly empty) value: the next identifier, if there is one. */
  const readValue = (): string => {
    const v = peek();
    let value = '';
    if (v.t === 'id') {
      value = v.v;
      next();
    }
    checkValue(value);
    return value;
  };
  if (peek().t === 'end') return { requirements: [] };
  for (;;) {
    let tok = next();
    if (tok.t === 'op' && tok.v === '!') {
      const k = next();
      if (k.t !== 'id') throw badRequest(`found '${describe(k)}', expected: identifier after '!'`);
      checkKey(k.v);
      reqs.push({ key: k.v, operator: '!', values: [] });
    } else if (tok.t === 'id') {
      const key = tok.v;
      checkKey(key);
      const op = peek();
      if (op.t === 'end' || (op.t === 'op' && op.v === ',')) {
        reqs.push({ key, operator: 'exists', values: [] });
      } else if (op.t === 'op' && (op.v === '=' || op.v === '==' || op.v === '!=')) {
        next();
        reqs.push({ key, operator: op.v, values: [readValue()] });
      } else if (op.t === 'op' && (op.v === '>' || op.v === '<')) {
        next();
        const v = next();
        if (v.t !== 'id' || !/^-?\d+$/.test(v.v)) {
          throw badRequest(`unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer`);
        }
        reqs.push({ key, operator: op.v === '>' ? 'gt' : 'lt', values: [v.v] });
      } else if (op.t === 'id' && (op.v === 'in' || op.v === 'notin')) {
        next();
        const open = next();
        if (!(open.t === 'op' && open.v === '(')) throw badRequest(`found '${describe(open)}', expected: '('`);
        const values: string[] = [];
        for (;;) {
          values.push(readValue());
          const sep = next();
          if (sep.t === 'op' && sep.v === ')') break;
          if (!(sep.t === 'op' && sep.v === ',')) throw badRequest(`found '${describe(sep)}', expected: ',' or ')'`);
        }
        reqs.push({ key, operator: op.v, values });
      } else {
        throw badRequest(`found '${describe(op)}', expected: in, notin, =, ==, !=, gt, lt`);
      }
    } else {
      throw badRequest(`found '${describe(tok)}', expected: !, identifier, or 'end of string'`);
    }
    tok = next();
    if (tok.t === 'end') break;
    if (!(tok.t === 'op' && tok.v === ',')) throw badRequest(`found '${describe(tok)}', expected: ',' or 'end of string'`);
    if (peek().t === 'end') throw badRequest(`found '', expected: identifier after ','`);
  }
  return { requirements: reqs };
}

function describe(t: Token): string {
  return t.t === 'end' ? '' : t.v;
}

function matchRequirement(r: LabelRequirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, r.key);
  const v = has ? labels[r.key]! : undefined;
  switch (r.operator) {
    case 'exists':
      return has;
    case '!':
      return !has;
    case '=':
    case '==':
    case 'in':
      return has && r.values.includes(v!);
    case '!=':
    case 'notin':
      return !has || !r.values.includes(v!);
    case 'gt':
    case 'lt': {
      if (!has || !/^-?\d+$/.test(v!)) return false;
      const n = Number(v);
      const bound = Number(r.values[0]);
      return r.operator === 'gt' ? n > bound : n < bound;
    }
  }
}

export function matchLabels(sel: LabelSelector, labels: Record<string, string> | undefined): boolean {
  if (sel.matchesNothing) return false;
  const l = labels ?? {};
  return sel.requirements.every((r) => matchRequirement(r, l));
}

/**
 * Converts a metav1.LabelSelector object. `undefined`/null selects nothing (as
 * LabelSelectorAsSelector treats nil); an empty object selects everything.
 */
export function labelSelectorFromObject(obj: unknown): LabelSelector {
  if (obj === undefined || obj === null) return { requirements: [], matchesNothing: true };
  if (!isMap(obj)) throw badRequest('label selector must be an object');
  const reqs: LabelRequirement[] = [];
  const ml = obj['matchLabels'];
  if (isMap(ml)) {
    for (const k of Object.keys(ml).sort()) reqs.push({ key: k, operator: '=', values: [String(ml[k])] });
  }
  const me = obj['matchExpressions'];
  if (Array.isArray(me)) {
    for (const e of me) {
      if (!isMap(e)) continue;
      const key = String(e['key'] ?? '');
      const op = String(e['operator'] ?? '');
      const values = Array.isArray(e['values']) ? e['values'].map(String) : [];
      const map: Record<string, LabelOperator> = { In: 'in', NotIn: 'notin', Exists: 'exists', DoesNotExist: '!' };
      const o = map[op];
      if (o === undefined) throw badRequest(`"${op}" is not a valid label selector operator`);
      reqs.push({ key, operator: o, values });
    }
  }
  return { requirements: reqs };
}

/** The query form of a selector (`a=b,c in (x,y)`), as a Scale's `status.selector` carries it. */
export function formatLabelSelector(sel: LabelSelector): string {
  return sel.requirements
    .map((r) => {
      switch (r.operator) {
        case 'exists':
          return r.key;
        case '!':
          return `!${r.key}`;
        case 'in':
        case 'notin':
          return `${r.key} ${r.operator} (${[...r.values].sort().join(',')})`;
        case 'gt':
          return `${r.key}>${r.values[0]}`;
        case 'lt':
          return `${r.key}<${r.values[0]}`;
        default:
          return `${r.key}${r.operator}${r.values[0]}`;
      }
    })
    .join(',');
}

export interface FieldRequirement {
  field: string;
  operator: '=' | '!=';
  value: string;
}

export interface FieldSelector {
  requirements: FieldRequirement[];
}

/** Splits on unescaped `sep`, keeping escapes for the next stage. */
function splitEscaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

function unescapeFieldValue(v: string): string {
  let out = '';
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c === '\\') {
      const n = v[i + 1];
      if (n === undefined || !['\\', ',', '='].includes(n)) {
        throw badRequest(`invalid field selector: invalid escape sequence in ${JSON.stringify(v)}`);
      }
      out += n;
      i++;
    } else if (c === ',' || c === '=') {
      throw badRequest(`invalid field selector: unescaped ${c} in ${JSON.stringify(v)}`);
    } else out += c;
  }
  return out;
}

/**
 * Parses `fieldSelector` (`a=b,c!=d`); every field must be in `supported`
 * (else 400 "field label not supported").
 */
export function parseFieldSelector(text: string, supported: ReadonlySet<string>): FieldSelector {
  const reqs: FieldRequirement[] = [];
  if (text.trim() === '') return { requirements: reqs };
  for (const term of splitEscaped(text, ',')) {
    let m: RegExpMatchArray | null = null;
    let op: '=' | '!=' = '=';
    // The operator is the first unescaped `!=`, `==` or `=`.
    for (let i = 0; i < term.length; i++) {
      if (term[i] === '\\') {
        i++;
        continue;
      }
      if (term.startsWith('!=', i)) {
        m = [term, term.slice(0, i), term.slice(i + 2)];
        op = '!=';
        break;
      }
      if (term.startsWith('==', i)) {
        m = [term, term.slice(0, i), term.slice(i + 2)];
        break;
      }
      if (term[i] === '=') {
        m = [term, term.slice(0, i), term.slice(i + 1)];
        break;
      }
    }
    if (m === null) throw badRequest(`invalid selector: '${text}'; can't understand '${term}'`);
    const field = m[1]!.trim();
    if (!supported.has(field)) throw badRequest(`field label not supported: ${field}`);
    reqs.push({ field, operator: op, value: unescapeFieldValue(m[2]!) });
  }
  return { requirements: reqs };
}

export function matchFields(sel: FieldSelector, fields: Record<string, string>): boolean {
  return sel.requirements.every((r) => {
    const v = fields[r.field] ?? '';
    return r.operator === '=' ? v === r.value : v !== r.value;
  });
}
