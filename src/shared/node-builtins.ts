/**
 * Node built-ins the agent and waypoint load with require() instead of `import * as`. Importing a
 * built-in as an ES module builds a namespace from every export, which runs every lazy getter:
 * node:http's load the bundled undici (~12 MB more resident memory per process on Node 24),
 * node:tls's parse the whole bundled root store (tls.rootCertificates), node:http2's build its
 * constants and more (measured: http +12 MB, tls +1.5 MB, http2 +1.2 MB). Types still come from
 * `import type * as x from 'node:x'`.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const nodeHttp = require('node:http') as typeof import('node:http');
export const nodeHttp2 = require('node:http2') as typeof import('node:http2');
export const nodeTls = require('node:tls') as typeof import('node:tls');
export const nodeHttps = require('node:https') as typeof import('node:https');
