/** Runs a command (nft, ip) inside a netns file with nsenter, so no `ip netns` name is needed. */
import { spawn } from 'node:child_process';
import { AmbitError, type ErrorCode } from '../../shared/errors.js';

export interface NetnsExecOptions {
  nsenterPath?: string;
  /** Upper bound for one run (default 10 s). */
  timeoutMs?: number;
  /** Error code for a failed run (default AMBIT_ERR_NFT_APPLY). */
  code?: ErrorCode;
}

/** `nsenter --net=<netnsPath> <argv...>` with `stdin`; rejects with the first stderr line on a non-zero exit. */
export function execInNetns(netnsPath: string, argv: string[], stdin = '', opts: NetnsExecOptions = {}): Promise<void> {
  const nsenter = opts.nsenterPath ?? 'nsenter';
  const code = opts.code ?? 'AMBIT_ERR_NFT_APPLY';
  return new Promise((resolve, reject) => {
    const child = spawn(nsenter, [`--net=${netnsPath}`, ...argv], {
      stdio: ['pipe', 'ignore', 'pipe'],
      timeout: opts.timeoutMs ?? 10_000,
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 8192) stderr += d;
    });
    child.stdin.on('error', () => undefined);
    child.on('error', (cause) =>
      reject(new AmbitError(code, `running ${nsenter} ${argv[0] ?? ''} failed; are util-linux, iproute2 and nftables installed?`, { cause })),
    );
    child.on('close', (exit, signal) => {
      if (exit === 0) return resolve();
      reject(
        new AmbitError(code, `${argv.join(' ')} in netns ${netnsPath} exited with ${exit ?? signal}: ${stderr.trim().split('\n')[0] ?? ''}`, {
          details: { netnsPath, argv, stderr: stderr.trim() },
        }),
      );
    });
    child.stdin.end(stdin);
  });
}
