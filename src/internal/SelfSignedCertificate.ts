/**
 * A self-signed certificate made at start-up, for servers with no certificate
 * of their own. Never smtp-server's built-in one, whose private key is public:
 * this key exists only in this process.
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"

/**
 * A fresh RSA-2048 certificate for `hostname`, valid for a year. The
 * certificate library is loaded only here: it adds about 4 MiB of heap that
 * servers with a certificate of their own need not carry.
 */
export const make = (hostname: string): Effect.Effect<{ readonly cert: string; readonly key: Redacted.Redacted<string> }> =>
  Effect.promise(async () => {
    const { default: selfsigned } = await import("selfsigned")
    return selfsigned.generate([{ name: "commonName", value: hostname }], {
      notAfterDate: new Date(Date.now() + 365 * 24 * 3600 * 1000),
      keySize: 2048,
      algorithm: "sha256",
      extensions: [{ name: "subjectAltName", altNames: [{ type: 2, value: hostname }] }]
    })
  }).pipe(Effect.map((pems) => ({ cert: pems.cert, key: Redacted.make(pems.private) })))
