/**
 * Maintenance tool, run by hand (not by the server): reads the protobuf file descriptors a Go
 * binary of kubectl carries (gzipped FileDescriptorProtos that generated code registers) and
 * writes the field table of the Kubernetes messages this server decodes to `k8s-wire.json`:
 * `node dist/src/local/apiserver/proto/extract.js /usr/lib/google-cloud-sdk/bin/kubectl.1.32 > src/local/apiserver/proto/k8s-wire.json`.
 * The table holds wire facts only (message names, field names, numbers, types).
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// protobufjs comes with @grpc/proto-loader; only this tool uses it.
const descriptor = require('protobufjs/ext/descriptor') as {
  FileDescriptorProto: { decode(b: Uint8Array): unknown; toObject(m: unknown, o: object): FileDesc };
};

interface FieldDesc {
  name: string;
  number: number;
  label: number;
  type: number;
  typeName?: string;
}
interface MessageDesc {
  name: string;
  field?: FieldDesc[];
  nestedType?: MessageDesc[];
  options?: { mapEntry?: boolean };
}
interface FileDesc {
  name: string;
  package: string;
  messageType?: MessageDesc[];
}

const WANTED = [
  'k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto',
  'k8s.io/apimachinery/pkg/runtime/generated.proto',
  'k8s.io/apimachinery/pkg/util/intstr/generated.proto',
  'k8s.io/apimachinery/pkg/api/resource/generated.proto',
  'k8s.io/api/core/v1/generated.proto',
  'k8s.io/api/apps/v1/generated.proto',
  'k8s.io/api/rbac/v1/generated.proto',
  'k8s.io/api/policy/v1/generated.proto',
  'k8s.io/api/discovery/v1/generated.proto',
  'k8s.io/api/coordination/v1/generated.proto',
  'k8s.io/api/authentication/v1/generated.proto',
  'k8s.io/api/authorization/v1/generated.proto',
  'k8s.io/api/autoscaling/v1/generated.proto',
];

const TYPE_NAMES: Record<number, string> = { 1: 'double', 2: 'float', 3: 'int64', 4: 'uint64', 5: 'int32', 6: 'fixed64', 7: 'fixed32', 8: 'bool', 9: 'string', 11: 'message', 12: 'bytes', 13: 'uint32', 14: 'enum', 15: 'sfixed32', 16: 'sfixed64', 17: 'sint32', 18: 'sint64' };

const bin = readFileSync(process.argv[2]!);
const files = new Map<string, FileDesc>();
for (let i = 0; i < bin.length - 3; i++) {
  if (bin[i] !== 0x1f || bin[i + 1] !== 0x8b || bin[i + 2] !== 0x08) continue;
  let raw: Buffer;
  try {
    raw = gunzipSync(bin.subarray(i, i + 400_000), { finishFlush: 2 });
  } catch {
    continue;
  }
  let fd: FileDesc;
  try {
    fd = descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(raw), { defaults: false });
  } catch {
    continue;
  }
  if (WANTED.includes(fd.name) && !files.has(fd.name)) files.set(fd.name, fd);
}
const missing = WANTED.filter((w) => !files.has(w));
if (missing.length > 0) {
  process.stderr.write(`descriptors not found: ${missing.join(', ')}\n`);
  process.exit(1);
}
/** message full name (without leading dot) → [jsonName, number, type, repeated(0/1), typeName?][]; maps flagged. */
const out: { messages: Record<string, Array<[string, number, string, number, string?]>>; maps: string[] } = { messages: {}, maps: [] };
function add(prefix: string, m: MessageDesc): void {
  const full = `${prefix}.${m.name}`;
  if (m.options?.mapEntry) out.maps.push(full);
  out.messages[full] = (m.field ?? []).map((f) => {
    const row: [string, number, string, number, string?] = [f.name, f.number, TYPE_NAMES[f.type] ?? String(f.type), f.label === 3 ? 1 : 0];
    if (f.typeName) row.push(f.typeName.replace(/^\./, ''));
    return row;
  });
  for (const n of m.nestedType ?? []) add(full, n);
}
for (const w of WANTED) for (const m of files.get(w)!.messageType ?? []) add(files.get(w)!.package, m);
process.stdout.write(JSON.stringify(out) + '\n');
