/**
 * A pod's volumes, as the kubelet's volume manager makes them: one folder per volume under the
 * pod's folder (root-only parents), filled from the API and bind-mounted by the container runtime
 * at each container's mountPath. Projected service-account tokens are requested through
 * TokenRequest bound to the pod (so they die with it) and rotated at 80 % of their lifetime;
 * configMap, secret and downwardAPI data are written with the volume's modes; emptyDir is an
 * empty folder; hostPath mounts the host path itself.
 *
 * Who may read what: a token file is 0600 and owned by the pod's user (runAsUser, when every
 * container runs as the same one; root otherwise), so only that user reads it; other files get
 * the volume's defaultMode (0644 unless set), group fsGroup when set.
 */
import { chmod, chown, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import type { KubeObject } from '../../controller/objects.js';
import { isNotFound, type KubeClient } from '../kube-client.js';
import { rec } from '../controllers/queue.js';

/** One file of a volume: path inside it, bytes, mode; a token file also records its lifetime. */
export interface VolumeFile {
  path: string;
  data: Buffer;
  mode: number;
  /** 'user': owned by the pod's user (tokens); 'group': root, group fsGroup. */
  owner: 'user' | 'group';
}

export interface PodUser {
  uid: number;
  gid: number;
  fsGroup?: number;
}

/** A volume ready to mount: its folder (or a host path), and when to refresh it (tokens). */
export interface PreparedVolume {
  name: string;
  source: string;
  /** ms since epoch when its tokens need renewing; undefined when nothing expires. */
  refreshAt?: number;
}

function int(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) ? v : undefined;
}

/**
 * The user a pod's files belong to: the pod's runAsUser/runAsGroup, or the one every container
 * sets; root when containers differ or none is set.
 */
export function podUser(pod: KubeObject): PodUser {
  const spec = rec(pod.spec);
  const psc = rec(spec.securityContext);
  const containers = (Array.isArray(spec.containers) ? spec.containers : []) as Array<Record<string, unknown>>;
  const uids = new Set(containers.map((c) => int(rec(c.securityContext).runAsUser) ?? int(psc.runAsUser) ?? 0));
  const gids = new Set(containers.map((c) => int(rec(c.securityContext).runAsGroup) ?? int(psc.runAsGroup) ?? int(rec(c.securityContext).runAsUser) ?? int(psc.runAsUser) ?? 0));
  const fsGroup = int(psc.fsGroup);
  return { uid: uids.size === 1 ? [...uids][0]! : 0, gid: gids.size === 1 ? [...gids][0]! : 0, ...(fsGroup !== undefined ? { fsGroup } : {}) };
}

/** Rejects item paths that leave the volume (`..`, absolute). */
function safeItemPath(p: string, where: string): string {
  const n = normalize(p);
  if (p === '' || n.startsWith('..') || n.startsWith('/') || n.split('/').includes('..')) {
    throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: path ${JSON.stringify(p)} must be relative and stay inside the volume`);
  }
  return n;
}

function fieldValue(pod: KubeObject, fieldPath: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (m) return String((m[1] === 'labels' ? pod.metadata.labels : pod.metadata.annotations)?.[m[2]!] ?? '');
  switch (fieldPath) {
    case 'metadata.name':
      return pod.metadata.name;
    case 'metadata.namespace':
      return pod.metadata.namespace ?? 'default';
    case 'metadata.uid':
      return pod.metadata.uid ?? '';
    case 'metadata.labels':
      return Object.entries(pod.metadata.labels ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n');
    case 'metadata.annotations':
      return Object.entries(pod.metadata.annotations ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n');
    case 'spec.nodeName':
      return String(rec(pod.spec).nodeName ?? '');
    case 'spec.serviceAccountName':
      return String(rec(pod.spec).serviceAccountName ?? 'default');
    case 'status.podIP':
      return String(rec(pod.status).podIP ?? '');
    case 'status.hostIP':
      return String(rec(pod.status).hostIP ?? '');
    default:
      throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `fieldRef ${JSON.stringify(fieldPath)} is not supported`);
  }
}

/** The value of a downward-API fieldRef of `pod` (env and volumes share it). */
export { fieldValue as downwardValue };

/** What the volume manager reads from the API. */
export interface VolumeSources {
  configMap(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  secret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** A token of the pod's service account bound to the pod (TokenRequest). */
  token(pod: KubeObject, audience: string | undefined, expirationSeconds: number): Promise<{ token: string; expirationTimestamp: string }>;
}

export function apiVolumeSources(client: KubeClient): VolumeSources {
  const read = async (path: string): Promise<KubeObject | undefined> => {
    try {
      return await client.get(path);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  };
  return {
    async configMap(ns, name) {
      const cm = await read(`/api/v1/namespaces/${encodeURIComponent(ns)}/configmaps/${encodeURIComponent(name)}`);
      if (!cm) return undefined;
      const out: Record<string, string> = { ...(rec(cm['data']) as Record<string, string>) };
      for (const [k, v] of Object.entries(rec(cm['binaryData']))) out[k] = Buffer.from(String(v), 'base64').toString('latin1');
      return out;
    },
    async secret(ns, name) {
      const s = await read(`/api/v1/namespaces/${encodeURIComponent(ns)}/secrets/${encodeURIComponent(name)}`);
      if (!s) return undefined;
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(rec(s['data']))) out[k] = Buffer.from(String(v), 'base64').toString('latin1');
      for (const [k, v] of Object.entries(rec(s['stringData']))) out[k] = String(v);
      return out;
    },
    async token(pod, audience, expirationSeconds) {
      const ns = pod.metadata.namespace ?? 'default';
      const sa = String(rec(pod.spec).serviceAccountName ?? 'default');
      const r = await client.create<{ status: { token: string; expirationTimestamp: string } }>(`/api/v1/namespaces/${encodeURIComponent(ns)}/serviceaccounts/${encodeURIComponent(sa)}/token`, {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: { ...(audience ? { audiences: [audience] } : {}), expirationSeconds, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata.name, uid: pod.metadata.uid } },
      });
      return r.status;
    },
  };
}

interface KeyItems {
  items?: Array<{ key: string; path: string; mode?: number }>;
  optional?: boolean;
}

function keyFiles(data: Record<string, string>, src: KeyItems, mode: number, where: string): VolumeFile[] {
  if (src.items && src.items.length > 0) {
    return src.items.map((it) => {
      if (!(it.key in data)) throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: key ${JSON.stringify(it.key)} not found`);
      return { path: safeItemPath(it.path, where), data: Buffer.from(data[it.key]!, 'latin1'), mode: it.mode ?? mode, owner: 'group' as const };
    });
  }
  return Object.entries(data).map(([k, v]) => ({ path: safeItemPath(k, where), data: Buffer.from(v, 'latin1'), mode, owner: 'group' as const }));
}

/**
 * The files of one volume of `pod` (undefined for hostPath and emptyDir, which have none), and
 * the earliest token expiry among them. Throws AMBIT_ERR_LOCAL_SANDBOX naming the pod, volume and
 * problem (a missing ConfigMap or Secret that is not optional, an unsupported volume type).
 */
export async function volumeFiles(pod: KubeObject, vol: Record<string, unknown>, sources: VolumeSources, now: number): Promise<{ files: VolumeFile[]; expiresAt?: number }> {
  const ns = pod.metadata.namespace ?? 'default';
  const where = `pod ${ns}/${pod.metadata.name} volume ${String(vol['name'])}`;
  const files: VolumeFile[] = [];
  let expiresAt: number | undefined;
  const addConfigMap = async (src: Record<string, unknown>, mode: number): Promise<void> => {
    const name = String(src['name'] ?? '');
    const data = await sources.configMap(ns, name);
    if (!data) {
      if (src['optional'] === true) return;
      throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: configmap "${name}" not found`);
    }
    files.push(...keyFiles(data, src as KeyItems, mode, `${where} configMap ${name}`));
  };
  const addSecret = async (name: string, src: Record<string, unknown>, mode: number): Promise<void> => {
    const data = await sources.secret(ns, name);
    if (!data) {
      if (src['optional'] === true) return;
      throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: secret "${name}" not found`);
    }
    files.push(...keyFiles(data, src as KeyItems, mode, `${where} secret ${name}`));
  };
  const addDownward = (src: Record<string, unknown>, mode: number): void => {
    for (const it of (src['items'] ?? []) as Array<Record<string, unknown>>) {
      const fieldPath = rec(it['fieldRef'])['fieldPath'];
      if (typeof fieldPath !== 'string') throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: only fieldRef items are supported in downwardAPI`);
      files.push({ path: safeItemPath(String(it['path'] ?? ''), where), data: Buffer.from(fieldValue(pod, fieldPath)), mode: int(it['mode']) ?? mode, owner: 'group' });
    }
  };
  if (vol['projected'] !== undefined) {
    const p = rec(vol['projected']);
    const mode = int(p['defaultMode']) ?? 0o644;
    for (const s of (p['sources'] ?? []) as Array<Record<string, unknown>>) {
      if (s['serviceAccountToken'] !== undefined) {
        const t = rec(s['serviceAccountToken']);
        const seconds = int(t['expirationSeconds']) ?? 3600;
        const audience = typeof t['audience'] === 'string' && t['audience'] !== '' ? t['audience'] : undefined;
        const issued = await sources.token(pod, audience, seconds);
        // Rotate at 80 % of the lifetime the server granted (kubelet's rule).
        const exp = Date.parse(issued.expirationTimestamp);
        const at = now + 0.8 * (Number.isFinite(exp) ? exp - now : seconds * 1000);
        expiresAt = expiresAt === undefined ? at : Math.min(expiresAt, at);
        files.push({ path: safeItemPath(String(t['path'] ?? 'token'), where), data: Buffer.from(issued.token), mode: 0o600, owner: 'user' });
      } else if (s['configMap'] !== undefined) await addConfigMap(rec(s['configMap']), mode);
      else if (s['secret'] !== undefined) await addSecret(String(rec(s['secret'])['name'] ?? ''), rec(s['secret']), mode);
      else if (s['downwardAPI'] !== undefined) addDownward(rec(s['downwardAPI']), mode);
      else throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: projected source ${Object.keys(s).join(',')} is not supported in local mode`);
    }
  } else if (vol['configMap'] !== undefined) await addConfigMap(rec(vol['configMap']), int(rec(vol['configMap'])['defaultMode']) ?? 0o644);
  else if (vol['secret'] !== undefined) {
    const s = rec(vol['secret']);
    await addSecret(String(s['secretName'] ?? ''), s, int(s['defaultMode']) ?? 0o644);
  } else if (vol['downwardAPI'] !== undefined) addDownward(rec(vol['downwardAPI']), int(rec(vol['downwardAPI'])['defaultMode']) ?? 0o644);
  else if (vol['emptyDir'] === undefined && vol['hostPath'] === undefined) {
    const kind = Object.keys(vol).filter((k) => k !== 'name').join(',') || '(none)';
    throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: volume type ${kind} is not supported in local mode (supported: projected, configMap, secret, downwardAPI, emptyDir, hostPath)`);
  }
  return expiresAt === undefined ? { files } : { files, expiresAt };
}

/** Writes `files` into `dir` (each through a temporary name), owned and moded as they ask. */
export async function writeVolume(dir: string, files: VolumeFile[], user: PodUser): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const f of files) {
    const target = join(dir, f.path);
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    const tmp = `${target}.tmp-${process.pid}`;
    await writeFile(tmp, f.data, { mode: f.mode });
    if (f.owner === 'user') await chown(tmp, user.uid, user.fsGroup ?? user.gid);
    else if (user.fsGroup !== undefined) await chown(tmp, 0, user.fsGroup);
    await rename(tmp, target);
  }
}

/**
 * Makes every volume of `pod` under `podDir/volumes/<name>`; hostPath volumes point at the host
 * path. Returns them by name, with the earliest refresh time of the tokens.
 */
export async function prepareVolumes(pod: KubeObject, podDir: string, sources: VolumeSources, now = Date.now()): Promise<Map<string, PreparedVolume>> {
  const out = new Map<string, PreparedVolume>();
  const user = podUser(pod);
  for (const vol of (rec(pod.spec).volumes ?? []) as Array<Record<string, unknown>>) {
    const name = String(vol['name'] ?? '');
    if (vol['hostPath'] !== undefined) {
      out.set(name, { name, source: String(rec(vol['hostPath'])['path'] ?? '') });
      continue;
    }
    const dir = join(podDir, 'volumes', name);
    let built;
    try {
      built = await volumeFiles(pod, vol, sources, now);
    } catch (e) {
      if (e instanceof AmbitError) throw e;
      throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `pod ${pod.metadata.namespace}/${pod.metadata.name} volume ${name}: ${errorMessage(e)}`, { cause: e });
    }
    await writeVolume(dir, built.files, user);
    if (vol['emptyDir'] !== undefined) {
      // As the kubelet makes it: writable by whatever user the containers run as.
      await chown(dir, 0, user.fsGroup ?? 0);
      await chmod(dir, 0o777);
    }
    out.set(name, { name, source: dir, ...(built.expiresAt !== undefined ? { refreshAt: built.expiresAt } : {}) });
  }
  return out;
}

/** Removes a pod's volume folders (hostPath sources are never touched). */
export async function removeVolumes(podDir: string): Promise<void> {
  await rm(join(podDir, 'volumes'), { recursive: true, force: true });
}
