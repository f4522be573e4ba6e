/** Text and binary data as the envelopes carry them: UTF-8, base64, copies of bytes. */

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

/** @param {string} text @returns {number} its size in UTF-8 bytes */
export function utf8Length(text) {
  return encoder.encode(text).length;
}

/** @param {string} text standard base64 @returns {Uint8Array} */
export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** @param {Uint8Array} bytes @returns {string} standard base64, padded */
export function toBase64(bytes) {
  let binary = '';
  const step = 0x8000; // String.fromCharCode takes its arguments on the stack
  for (let i = 0; i < bytes.length; i += step) {
    // @ts-expect-error: fromCharCode takes the bytes as its numbers
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  }
  return btoa(binary);
}

/**
 * A copy of binary application data as bytes (send() copies, like WebSocket.send).
 * @param {ArrayBuffer|ArrayBufferView} data
 * @returns {Uint8Array}
 */
export function copyBytes(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}
