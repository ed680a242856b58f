/**
 * The DATA body as an Effect `Stream`, read straight from smtp-server's stream.
 *
 * Pull-based: bytes are read only when the handler pulls, so a slow handler
 * slows the client down (back-pressure) instead of buffering the message.
 * The size limit is checked as the bytes arrive. This is the per-message hot
 * path, so it reads with `read()` in paused mode rather than through a
 * general-purpose adapter.
 */
import { Cause, Effect, Stream } from "effect"
import type * as Arr from "effect/Array"
import type { Readable } from "node:stream"
import * as Reject from "../phases/Reject.ts"

/** The reply for a message over the size limit. */
export const tooBig: Reject.SmtpRejection = Reject.permanent(552, "5.3.4", "Message size exceeds fixed maximum message size")

/** The reply when the client goes away in the middle of the message. */
export const readFailed: Reject.SmtpRejection = Reject.temporary(451, "4.3.0", "Error reading the message")

type Chunks = Arr.NonEmptyReadonlyArray<Uint8Array>

/**
 * `readable` as a stream that fails with `tooBig` past `maxBytes`, and with
 * `verdict()` as soon as that says the message is rejected.
 */
export const fromReadable = (
  readable: Readable,
  maxBytes: number,
  verdict: () => Reject.SmtpRejection | undefined = () => undefined
): Stream.Stream<Uint8Array, Reject.SmtpRejection> =>
  Stream.fromPull(Effect.sync(() => {
    let seen = 0
    // Takes what is buffered: a batch, the end, an error, or nothing yet.
    const take = (): Effect.Effect<Chunks, Reject.SmtpRejection | Cause.Done> | undefined => {
      const rejected = verdict()
      if (rejected !== undefined) return Effect.fail(rejected)
      if (readable.errored !== null) return Effect.fail(readFailed)
      const first: Uint8Array | null = readable.read()
      if (first !== null) {
        const batch: [Uint8Array, ...Array<Uint8Array>] = [first]
        seen += first.length
        for (let next: Uint8Array | null = readable.read(); next !== null; next = readable.read()) {
          batch.push(next)
          seen += next.length
        }
        return seen > maxBytes ? Effect.fail(tooBig) : Effect.succeed(batch)
      }
      if (readable.readableEnded) return Cause.done()
      if (readable.destroyed) return Effect.fail(readFailed)
      return undefined
    }
    return Effect.callback<Chunks, Reject.SmtpRejection | Cause.Done>((resume) => {
      const now = take()
      if (now !== undefined) return resume(now)
      const retry = () => {
        const later = take()
        if (later === undefined) return
        detach()
        resume(later)
      }
      const detach = () => {
        readable.off("readable", retry)
        readable.off("end", retry)
        readable.off("close", retry)
        readable.off("error", retry)
      }
      readable.on("readable", retry)
      readable.on("end", retry)
      readable.on("close", retry)
      readable.on("error", retry)
      return Effect.sync(detach)
    })
  }))
