/**
 * The DATA body as an Effect `Stream`, read straight from smtp-server's stream.
 *
 * Pull-based: bytes are read only when the handler pulls, so a slow handler
 * slows the client down (back-pressure) instead of buffering the message.
 * The size limit is checked as the bytes arrive. This is the per-message hot
 * path, so it reads with `read()` in paused mode rather than through a
 * general-purpose adapter.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Arr from "effect/Array"
import type { Duplex, Readable } from "node:stream"
import type { DataError } from "../phases/Middleware.ts"
import * as Reject from "../phases/Reject.ts"
import type { MessageGuard } from "./MessageGuard.ts"

type Chunks = Arr.NonEmptyReadonlyArray<Uint8Array>

/**
 * `readable` as a stream of the bytes `guard` passes, failing with
 * `MessageTooLarge` past `maxBytes` and with the guard's verdict as soon as
 * it has one.
 */
export const fromReadable = (
  readable: Duplex,
  maxBytes: number,
  guard: MessageGuard
): Stream.Stream<Uint8Array, DataError> =>
  Stream.fromPull(Effect.sync(() => {
    let seen = 0
    let finished = false
    // Takes what is buffered: a batch, the end, an error, or nothing yet.
    const take = (): Effect.Effect<Chunks, DataError | Cause.Done> | undefined => {
      if (readable.errored !== null) return Effect.fail(Reject.readFailed)
      const batch: Array<Uint8Array> = []
      for (let next: Buffer | null = readable.read(); next !== null; next = readable.read()) {
        // The limit counts the bytes as received, as smtp-server's own 552 does, not what the guard passes on.
        seen += next.length
        const passed = guard.pass(next)
        if (passed.length > 0) batch.push(passed)
      }
      // smtp-server ends the message's stream when the final dot arrives: once that stream is read to its last
      // byte, the message is whole, without waiting a turn for the 'end' event.
      if ((readable.readableEnded || (readable.writableEnded && readable.readableLength === 0)) && !finished) {
        finished = true
        const tail = guard.finish()
        if (tail.length > 0) batch.push(tail)
      }
      if (guard.verdict !== undefined) return Effect.fail(guard.verdict)
      if (seen > maxBytes) return Effect.fail(new Reject.MessageTooLarge({ limit: maxBytes, received: seen }))
      if (Arr.isReadonlyArrayNonEmpty(batch)) return Effect.succeed(batch)
      if (finished) return Cause.done()
      if (readable.destroyed) return Effect.fail(Reject.readFailed)
      return undefined
    }
    // Waits for more of the message; a pull that finds something at once needs no waiting at all.
    const more = Effect.callback<Chunks, DataError | Cause.Done>((resume) => {
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
    return Effect.suspend(() => take() ?? more)
  }))

/**
 * Reads and discards what the handler left, still through `guard`, then
 * calls `then`: the reply can only be decided once the whole body was seen.
 */
export const drain = (readable: Readable, guard: MessageGuard, then: () => void): void => {
  let done = false
  const end = () => {
    if (done) return
    done = true
    if (!readable.destroyed) guard.finish()
    then()
  }
  if (readable.readableEnded || readable.destroyed) return end()
  readable.removeAllListeners("readable")
  readable.on("data", (chunk: Buffer) => guard.pass(chunk))
  readable.once("end", end)
  readable.once("close", end)
  readable.resume()
}
