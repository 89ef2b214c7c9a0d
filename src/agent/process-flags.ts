/**
 * Node/V8 flags for the agent process, for whoever spawns it (local mode, a DaemonSet command).
 * --max-semi-space-size=1 (MiB): V8's young generation otherwise grows to 16 MiB per semi-space
 * under traffic and keeps it; an agent's short-lived objects are small (payload buffers live
 * outside the heap), so 1 MiB costs a few more scavenges and saves ~10 MiB of resident memory.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
