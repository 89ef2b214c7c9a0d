/**
 * What the waypoint does with a port's protocol (detected by the controller, controller/translate/
 * protocol.ts, and pushed in the config): which ones it serves as HTTP, and when the upstream leg
 * speaks HTTP/2.
 */

/** Protocols the waypoint terminates and routes as HTTP; everything else is proxied as TCP. */
export function isHttpProtocol(p: string): boolean {
  return p === 'http' || p === 'http2' || p === 'grpc' || p === 'grpc-web';
}

/**
 * Whether the upstream leg is HTTP/2: ports declared http2/grpc, or a gRPC request; otherwise
 * HTTP/1.1, which every HTTP server speaks (h2c-only backends must declare their port).
 */
export function upstreamUsesHttp2(portProtocol: string | undefined, _downstreamHttp2: boolean, contentType: string | undefined): boolean {
  if (portProtocol === 'http2' || portProtocol === 'grpc') return true;
  return contentType === 'application/grpc' || contentType?.startsWith('application/grpc+') === true;
}
