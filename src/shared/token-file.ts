/**
 * The bearer token an agent or a waypoint presents to the controller, from a file something else
 * keeps current: on Kubernetes the kubelet's projected service-account token (audience istio-ca),
 * which it rewrites before the token expires by swapping the `..data` symlink of the volume; in
 * manifests mode a node token file. Every call looks at the file (one stat) and reads it again
 * when it is another file or was rewritten, so the CA client and each config-stream connection
 * always present the current token. Tokens are never logged.
 */
import { readFile, stat } from 'node:fs/promises';
import { AmbitError, errorMessage } from './errors.js';
import type { Logger } from './log.js';

/** What identifies one version of the file: a swap changes the inode, a rewrite mtime or size. */
function versionOf(s: { dev: number; ino: number; mtimeMs: number; size: number }): string {
  return `${s.dev}:${s.ino}:${s.mtimeMs}:${s.size}`;
}

export class TokenFile {
  private cached: { version: string; token: string } | undefined;
  private readonly log: Logger | undefined;

  constructor(
    readonly path: string,
    opts: { log?: Logger } = {},
  ) {
    this.log = opts.log?.child({ component: 'token-file' });
  }

  /**
   * The current token. Throws AMBIT_ERR_TOKEN_FILE naming the file when it cannot be read or holds
   * no token and no earlier token was read; after one was, a failed re-read keeps that one (the
   * kubelet replaces the file atomically, so a failure is brief) and is logged.
   */
  async read(): Promise<string> {
    let problem: string;
    let cause: unknown;
    try {
      const version = versionOf(await stat(this.path));
      if (this.cached?.version === version) return this.cached.token;
      const token = (await readFile(this.path, 'utf8')).trim();
      if (token.length > 0 && !/\s/.test(token)) {
        if (this.cached) this.log?.info({ file: this.path }, 'token file changed; presenting the new token from now on');
        this.cached = { version, token };
        return token;
      }
      problem = token.length === 0 ? 'is empty' : 'holds more than one word (a token has no whitespace)';
    } catch (e) {
      problem = `cannot be read: ${errorMessage(e)}`;
      cause = e;
    }
    const message = `token file ${this.path} ${problem}; it must hold the bearer token for the controller (on Kubernetes the projected service-account token, audience istio-ca)`;
    if (this.cached) {
      this.log?.warn({ file: this.path, err: new AmbitError('AMBIT_ERR_TOKEN_FILE', message, { cause }) }, 'token file unreadable; presenting the token read before');
      return this.cached.token;
    }
    throw new AmbitError('AMBIT_ERR_TOKEN_FILE', message, { cause });
  }
}
