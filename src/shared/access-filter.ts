/**
 * The expressions of Istio Telemetry `accessLogging[].filter.expression`: a subset of CEL over
 * Envoy's request attributes, parsed once (`parseAccessFilter`, pure) and evaluated per request
 * (`evalAccessFilter`).
 *
 * Grammar (CEL's precedence): `a || b`, `a && b`, `!a`, `-a`, comparisons `== != < <= > >=`,
 * `x in list` and `key in map`, parentheses, list literals `[1, 2]`, integers, strings ('…' or
 * "…"), `true`/`false`/`null`, attribute paths (`response.code`, `request.headers['x-id']`),
 * the functions `has(path)`, `size(x)`, `int(x)`, `string(x)`, `duration("1.5s")` and the
 * methods `.startsWith(s)`, `.endsWith(s)`, `.contains(s)`, `.matches(re)`.
 * Attributes (`ACCESS_FILTER_ATTRIBUTES`): request.{method,path,url_path,host,scheme,protocol,id,
 * headers,useragent,referer,size,duration} and response.{code,grpc_status,size,flags}; durations
 * are milliseconds, so `request.duration > duration("100ms")` compares them.
 *
 * As in Envoy, an expression that fails while evaluating (a header that is absent, types that do
 * not compare) counts as false: the line is not written.
 */

export type AccessFilterExpr =
  | { k: 'lit'; v: unknown }
  | { k: 'attr'; path: string[] }
  | { k: 'index'; of: AccessFilterExpr; key: AccessFilterExpr }
  | { k: 'list'; items: AccessFilterExpr[] }
  | { k: 'not' | 'neg'; of: AccessFilterExpr }
  | { k: 'bin'; op: BinOp; a: AccessFilterExpr; b: AccessFilterExpr }
  | { k: 'call'; fn: string; target?: AccessFilterExpr; args: AccessFilterExpr[] };

type BinOp = '||' | '&&' | '==' | '!=' | '<' | '<=' | '>' | '>=' | 'in';

/** The attributes a filter may name (a map-valued one is indexed with `[...]`). */
export const ACCESS_FILTER_ATTRIBUTES: readonly string[] = [
  'request.method',
  'request.path',
  'request.url_path',
  'request.host',
  'request.scheme',
  'request.protocol',
  'request.id',
  'request.headers',
  'request.useragent',
  'request.referer',
  'request.size',
  'request.duration',
  'response.code',
  'response.grpc_status',
  'response.size',
  'response.flags',
];

const FUNCTIONS = new Set(['has', 'size', 'int', 'string', 'duration']);
const METHODS = new Set(['startsWith', 'endsWith', 'contains', 'matches']);

export class AccessFilterError extends Error {}

type Token = { t: 'num'; v: number } | { t: 'str'; v: string } | { t: 'id'; v: string } | { t: 'op'; v: string } | { t: 'end' };

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (/[0-9]/.test(c)) {
      let j = i;
      while (j < text.length && /[0-9]/.test(text[j]!)) j++;
      if (text[j] === 'u') j++; // CEL's unsigned suffix
      out.push({ t: 'num', v: Number(text.slice(i, text[j - 1] === 'u' ? j - 1 : j)) });
      i = j;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let s = '';
      while (j < text.length && text[j] !== c) {
        if (text[j] === '\\' && j + 1 < text.length) {
          const e = text[j + 1]!;
          s += e === 'n' ? '\n' : e === 't' ? '\t' : e;
          j += 2;
        } else s += text[j++];
      }
      if (j >= text.length) throw new AccessFilterError(`unterminated string starting at offset ${i}`);
      out.push({ t: 'str', v: s });
      i = j + 1;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i;
      while (j < text.length && /[A-Za-z0-9_]/.test(text[j]!)) j++;
      out.push({ t: 'id', v: text.slice(i, j) });
      i = j;
      continue;
    }
    const two = text.slice(i, i + 2);
    if (['||', '&&', '==', '!=', '<=', '>='].includes(two)) {
      out.push({ t: 'op', v: two });
      i += 2;
      continue;
    }
    if ('!<>()[],.-'.includes(c)) {
      out.push({ t: 'op', v: c });
      i++;
      continue;
    }
    throw new AccessFilterError(`unexpected character ${JSON.stringify(c)} at offset ${i}`);
  }
  out.push({ t: 'end' });
  return out;
}

const show = (t: Token): string => (t.t === 'end' ? 'the end' : JSON.stringify(String(t.v)));

/** Parses a filter expression; throws AccessFilterError naming what is wrong and where. */
export function parseAccessFilter(text: string): AccessFilterExpr {
  if (text.length > 4096) throw new AccessFilterError('is longer than 4096 characters');
  const toks = tokenize(text);
  let p = 0;
  let depth = 0;
  const peek = (): Token => toks[p]!;
  const isOp = (v: string): boolean => {
    const t = peek();
    return t.t === 'op' && t.v === v;
  };
  const expect = (v: string): void => {
    if (!isOp(v)) throw new AccessFilterError(`expected ${JSON.stringify(v)}, found ${show(peek())}`);
    p++;
  };
  const nested = <T>(f: () => T): T => {
    if (++depth > 64) throw new AccessFilterError('is nested too deeply');
    try {
      return f();
    } finally {
      depth--;
    }
  };

  const or = (): AccessFilterExpr => {
    let a = and();
    while (isOp('||')) {
      p++;
      a = { k: 'bin', op: '||', a, b: and() };
    }
    return a;
  };
  const and = (): AccessFilterExpr => {
    let a = relation();
    while (isOp('&&')) {
      p++;
      a = { k: 'bin', op: '&&', a, b: relation() };
    }
    return a;
  };
  const relation = (): AccessFilterExpr => {
    const a = unary();
    const t = peek();
    if ((t.t === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(t.v)) || (t.t === 'id' && t.v === 'in')) {
      p++;
      return { k: 'bin', op: t.v as BinOp, a, b: unary() };
    }
    return a;
  };
  const unary = (): AccessFilterExpr =>
    nested(() => {
      if (isOp('!')) {
        p++;
        return { k: 'not', of: unary() };
      }
      if (isOp('-')) {
        p++;
        return { k: 'neg', of: unary() };
      }
      return member();
    });
  const member = (): AccessFilterExpr => {
    let e = primary();
    for (;;) {
      if (isOp('.')) {
        p++;
        const name = peek();
        if (name.t !== 'id') throw new AccessFilterError(`expected a name after ".", found ${show(name)}`);
        p++;
        if (isOp('(')) {
          if (!METHODS.has(name.v)) throw new AccessFilterError(`unknown method ${name.v}() (known: ${[...METHODS].join(', ')})`);
          e = { k: 'call', fn: name.v, target: e, args: args() };
        } else if (e.k === 'attr') e = { k: 'attr', path: [...e.path, name.v] };
        else throw new AccessFilterError(`field .${name.v} of something that is not an attribute`);
      } else if (isOp('[')) {
        p++;
        const key = or();
        expect(']');
        e = { k: 'index', of: e, key };
      } else return e;
    }
  };
  const args = (): AccessFilterExpr[] => {
    expect('(');
    const out: AccessFilterExpr[] = [];
    if (!isOp(')')) {
      out.push(or());
      while (isOp(',')) {
        p++;
        out.push(or());
      }
    }
    expect(')');
    return out;
  };
  const primary = (): AccessFilterExpr => {
    const t = peek();
    if (t.t === 'num' || t.t === 'str') {
      p++;
      return { k: 'lit', v: t.v };
    }
    if (t.t === 'op' && t.v === '(') {
      p++;
      const e = or();
      expect(')');
      return e;
    }
    if (t.t === 'op' && t.v === '[') {
      p++;
      const items: AccessFilterExpr[] = [];
      if (!isOp(']')) {
        items.push(or());
        while (isOp(',')) {
          p++;
          items.push(or());
        }
      }
      expect(']');
      return { k: 'list', items };
    }
    if (t.t === 'id') {
      p++;
      if (t.v === 'true' || t.v === 'false') return { k: 'lit', v: t.v === 'true' };
      if (t.v === 'null') return { k: 'lit', v: null };
      if (isOp('(')) {
        if (!FUNCTIONS.has(t.v)) throw new AccessFilterError(`unknown function ${t.v}() (known: ${[...FUNCTIONS].join(', ')})`);
        const a = args();
        if (a.length !== 1) throw new AccessFilterError(`${t.v}() takes one argument, got ${a.length}`);
        if (t.v === 'has' && a[0]!.k !== 'attr' && a[0]!.k !== 'index') throw new AccessFilterError('has() takes an attribute such as request.headers["x-id"]');
        if (t.v === 'duration') {
          const d = a[0]!;
          const ms = d.k === 'lit' && typeof d.v === 'string' ? durationMs(d.v) : undefined;
          if (ms === undefined) throw new AccessFilterError('duration() takes a string such as "1.5s" or "100ms"');
          return { k: 'lit', v: ms };
        }
        return { k: 'call', fn: t.v, args: a };
      }
      return { k: 'attr', path: [t.v] };
    }
    throw new AccessFilterError(`unexpected ${show(t)}`);
  };

  const e = or();
  if (peek().t !== 'end') throw new AccessFilterError(`unexpected ${show(peek())} after a complete expression`);
  checkAttributes(e);
  return e;
}

/** Every attribute path names a known attribute; map attributes are only indexed. */
function checkAttributes(e: AccessFilterExpr): void {
  switch (e.k) {
    case 'attr': {
      const name = e.path.join('.');
      if (!ACCESS_FILTER_ATTRIBUTES.includes(name)) throw new AccessFilterError(`attribute ${name} is not supported (supported: ${ACCESS_FILTER_ATTRIBUTES.join(', ')})`);
      return;
    }
    case 'index':
      checkAttributes(e.of);
      return checkAttributes(e.key);
    case 'list':
      return e.items.forEach(checkAttributes);
    case 'not':
    case 'neg':
      return checkAttributes(e.of);
    case 'bin':
      checkAttributes(e.a);
      return checkAttributes(e.b);
    case 'call':
      if (e.target) checkAttributes(e.target);
      return e.args.forEach(checkAttributes);
    case 'lit':
      return;
  }
}

/** `1.5s`, `100ms`, `2m`, `1h30m` → milliseconds; undefined when it is not a duration. */
function durationMs(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/gy;
  const unit: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };
  let total = 0;
  let matched = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * unit[m[2]!]!;
    matched = re.lastIndex;
  }
  return matched === text.length && text.length > 0 ? total : undefined;
}

/** What a request offers a filter: attribute path → value (maps for `request.headers`). */
export type AccessFilterAttributes = (name: string) => unknown;

class EvalError extends Error {}

function fail(what: string): never {
  throw new EvalError(what);
}

function evaluate(e: AccessFilterExpr, attrs: AccessFilterAttributes, regexes: Map<string, RegExp>): unknown {
  switch (e.k) {
    case 'lit':
      return e.v;
    case 'attr': {
      const v = attrs(e.path.join('.'));
      return v === undefined ? fail(`no ${e.path.join('.')}`) : v;
    }
    case 'index': {
      const of = evaluate(e.of, attrs, regexes);
      const key = evaluate(e.key, attrs, regexes);
      if (of instanceof Map) return of.has(key) ? of.get(key) : fail(`no key ${String(key)}`);
      if (Array.isArray(of) && typeof key === 'number') return key >= 0 && key < of.length ? of[key] : fail('index out of range');
      return fail('index of something that is not a map or list');
    }
    case 'list':
      return e.items.map((i) => evaluate(i, attrs, regexes));
    case 'not': {
      const v = evaluate(e.of, attrs, regexes);
      return typeof v === 'boolean' ? !v : fail('! of a non-boolean');
    }
    case 'neg': {
      const v = evaluate(e.of, attrs, regexes);
      return typeof v === 'number' ? -v : fail('- of a non-number');
    }
    case 'bin':
      return binary(e.op, e.a, e.b, attrs, regexes);
    case 'call':
      return call(e, attrs, regexes);
  }
}

function binary(op: BinOp, ea: AccessFilterExpr, eb: AccessFilterExpr, attrs: AccessFilterAttributes, regexes: Map<string, RegExp>): unknown {
  if (op === '||' || op === '&&') {
    // CEL's commutative logic: an error on one side is absorbed when the other side decides.
    let a: unknown;
    let aFailed = false;
    try {
      a = evaluate(ea, attrs, regexes);
    } catch (err) {
      if (!(err instanceof EvalError)) throw err;
      aFailed = true;
    }
    if (!aFailed && typeof a !== 'boolean') fail(`${op} of a non-boolean`);
    if (!aFailed && a === (op === '||')) return a;
    const b = evaluate(eb, attrs, regexes);
    if (typeof b !== 'boolean') fail(`${op} of a non-boolean`);
    if (b === (op === '||')) return b;
    return aFailed ? fail('error on one side') : b;
  }
  const a = evaluate(ea, attrs, regexes);
  const b = evaluate(eb, attrs, regexes);
  switch (op) {
    case '==':
      return equal(a, b);
    case '!=':
      return !equal(a, b);
    case 'in':
      if (Array.isArray(b)) return b.some((x) => equal(a, x));
      if (b instanceof Map) return b.has(a);
      return fail('in of something that is not a list or map');
    default: {
      if (!((typeof a === 'number' && typeof b === 'number') || (typeof a === 'string' && typeof b === 'string'))) fail(`${op} between ${typeof a} and ${typeof b}`);
      const x = a as number | string;
      const y = b as number | string;
      return op === '<' ? x < y : op === '<=' ? x <= y : op === '>' ? x > y : x >= y;
    }
  }
}

function equal(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  return a === b;
}

function call(e: Extract<AccessFilterExpr, { k: 'call' }>, attrs: AccessFilterAttributes, regexes: Map<string, RegExp>): unknown {
  if (e.fn === 'has') {
    try {
      evaluate(e.args[0]!, attrs, regexes);
      return true;
    } catch (err) {
      if (err instanceof EvalError) return false;
      throw err;
    }
  }
  const arg = evaluate(e.args[0]!, attrs, regexes);
  if (!e.target) {
    if (e.fn === 'size') return typeof arg === 'string' || Array.isArray(arg) ? arg.length : arg instanceof Map ? arg.size : fail('size() of a non-collection');
    if (e.fn === 'int') return typeof arg === 'number' ? Math.trunc(arg) : typeof arg === 'string' && /^-?\d+$/.test(arg) ? Number(arg) : fail('int() of a non-number');
    if (e.fn === 'string') return typeof arg === 'string' || typeof arg === 'number' || typeof arg === 'boolean' ? String(arg) : fail('string() of a collection');
    return fail(`unknown function ${e.fn}`);
  }
  const target = evaluate(e.target, attrs, regexes);
  if (typeof target !== 'string' || typeof arg !== 'string') return fail(`${e.fn}() needs strings`);
  if (e.fn === 'startsWith') return target.startsWith(arg);
  if (e.fn === 'endsWith') return target.endsWith(arg);
  if (e.fn === 'contains') return target.includes(arg);
  let re = regexes.get(arg);
  if (!re) {
    try {
      re = new RegExp(arg, 'u');
    } catch {
      return fail('matches() with an invalid regular expression');
    }
    if (regexes.size < 256) regexes.set(arg, re);
  }
  return re.test(target);
}

const REGEXES = new Map<string, RegExp>();

/** True when the expression holds for the request; false when it does not or cannot be evaluated. */
export function evalAccessFilter(e: AccessFilterExpr, attrs: AccessFilterAttributes): boolean {
  try {
    return evaluate(e, attrs, REGEXES) === true;
  } catch (err) {
    if (err instanceof EvalError) return false;
    throw err;
  }
}

/** The expression's value for the request (Telemetry tag values); undefined when it cannot be evaluated. */
export function evalAccessFilterValue(e: AccessFilterExpr, attrs: AccessFilterAttributes): unknown {
  try {
    return evaluate(e, attrs, REGEXES);
  } catch (err) {
    if (err instanceof EvalError) return undefined;
    throw err;
  }
}
