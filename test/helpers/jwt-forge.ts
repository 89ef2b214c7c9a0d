// A token whose signature is certainly wrong. Changing the last characters of a
// base64url signature is not enough: the final character carries only a few
// significant bits, so about one edit in 256 decodes to the same signature.
// Replacing a character in the middle of the signature always changes its bytes.
export function forgeSignature(token: string): string {
  const dot = token.lastIndexOf('.');
  const sig = token.slice(dot + 1);
  if (dot < 0 || sig.length < 4) throw new Error(`forgeSignature: not a signed JWT: ${token.slice(0, 20)}...`);
  const at = dot + 1 + Math.floor(sig.length / 2);
  const swapped = token[at] === 'A' ? 'B' : 'A';
  return token.slice(0, at) + swapped + token.slice(at + 1);
}
