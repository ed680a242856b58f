/**
 * The DATA body as an Effect `Stream`, read straight from smtp-server's stream.
 *
 * With back-pressure: bytes flow only once the handler pulls, and at most
 * `highWaterMark` of them wait for it, so a slow handler slows the client
 * down instead of buffering the message. The size limit is checked as the
 * bytes arrive. This is the per-message hot path: the chunks are taken as
 * smtp-server writes them ('data' events), never copied together, and the
 * listeners are set once per message.
 */
import { Cause, Effect, Stream } from "effect"
import * as Arr from "effect/Array"
import type { Readable } from "node:stream"
import * as Reject from "../phases/Reject.ts"
import type { MessageGuard } from "./MessageGuard.ts"

/** The reply for a message over the size limit. */
const tooBig: Reject.SmtpRejection = Reject.permanent(552, "5.3.4", "Message size exceeds fixed maximum message size")

/** The reply when the client goes away in the middle of the message. */
const readFailed: Reject.SmtpRejection = Reject.temporary(451, "4.3.0", "Error reading the message")

/** Bytes that may wait for the handler before the client is held back. */
const highWaterMark = 256 * 1024

type Chunks = Arr.NonEmptyReadonlyArray<Uint8Array>

/** A message body: read by the handler as `stream`, then drained. */
export interface MessageBody {
  /** The bytes `guard` passes; fails with `tooBig` past `maxBytes` and with the guard's verdict as soon as it has one. */
  readonly stream: Stream.Stream<Uint8Array, Reject.SmtpRejection>
  /**
   * Reads and discards what the handler left, still through `guard`, then
   * calls `then`: the reply can only be decided once the whole body was seen.
   */
  readonly drain: (then: () => void) => void
}

/** The body `readable` carries, checked by `guard`. */
export const make = (readable: Readable, maxBytes: number, guard: MessageGuard): MessageBody => {
  let queue: Array<Uint8Array> = []
  let queued = 0
  let seen = 0
  let ended = false
  let failed = false
  let listening = false
  /** Set while the handler waits for bytes. */
  let wake: (() => void) | undefined
  /** Set once the handler is done with the body. */
  let drained: (() => void) | undefined

  const onData = (chunk: Buffer): void => {
    const passed = guard.pass(chunk)
    if (drained !== undefined) return
    seen += passed.length
    if (passed.length > 0) {
      queue.push(passed)
      queued += passed.length
      if (queued >= highWaterMark) readable.pause()
    }
    wake?.()
  }
  const onEnd = (): void => {
    ended = true
    if (drained !== undefined) return drained()
    const tail = guard.finish()
    if (tail.length > 0) {
      seen += tail.length
      queue.push(tail)
    }
    wake?.()
  }
  const onFailure = (): void => {
    if (ended) return
    failed = true
    if (drained !== undefined) return drained()
    wake?.()
  }
  const listen = (): void => {
    if (listening) return
    listening = true
    readable.on("data", onData)
    readable.once("end", onEnd)
    readable.once("close", onFailure)
    readable.on("error", onFailure)
  }

  // What the handler gets now: a batch, the end, a failure, or nothing yet.
  const take = (): Effect.Effect<Chunks, Reject.SmtpRejection | Cause.Done> | undefined => {
    if (guard.verdict !== undefined) return Effect.fail(guard.verdict)
    if (seen > maxBytes) return Effect.fail(tooBig)
    if (Arr.isArrayNonEmpty(queue)) {
      const batch = queue
      queue = []
      if (queued >= highWaterMark) readable.resume()
      queued = 0
      return Effect.succeed(batch)
    }
    if (ended) return Cause.done()
    if (failed || readable.destroyed) return Effect.fail(readFailed)
    return undefined
  }

  const pull = Effect.suspend(() => {
    listen()
    const now = take()
    if (now !== undefined) return now
    return Effect.callback<Chunks, Reject.SmtpRejection | Cause.Done>((resume) => {
      wake = () => {
        const later = take()
        if (later === undefined) return
        wake = undefined
        resume(later)
      }
      return Effect.sync(() => {
        wake = undefined
      })
    })
  })

  const drain = (then: () => void): void => {
    let done = false
    drained = () => {
      if (done) return
      done = true
      if (!readable.destroyed) guard.finish()
      then()
    }
    queue = []
    if (ended || failed || readable.readableEnded || readable.destroyed) return drained()
    listen()
    readable.resume()
  }

  return { stream: Stream.fromPull(Effect.succeed(pull)), drain }
}
