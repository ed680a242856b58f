/**
 * Where accepted messages go.
 *
 * A `MessageStore` takes the envelope and the body stream of a message and
 * stores it durably before the 250 reply: when `store` succeeds the whole
 * message is safe, when it fails nothing may be left behind. A storage fault
 * is a `StorageError` whose reason decides the reply (`452 4.3.1` when the
 * disk or a quota is full, `451 4.3.0` otherwise); a rejection of the body
 * itself (too large, malformed, the client gone) passes through as it is.
 * The id `store` succeeds with names the message: the `deliver` plugin puts
 * it in its reply (`250 2.0.0 Ok: queued as <id>`) and its log line.
 * `layerMemory` keeps messages in memory for tests, with a switch that makes
 * it fail as a disk would; `Maildir` (in layers) writes them to disk.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { DataError } from "../phases/Middleware.ts"
import * as Reject from "../phases/Reject.ts"
import type * as SmtpSession from "./SmtpSession.ts"
import type * as SmtpTransaction from "./SmtpTransaction.ts"

/** What a store is told about a message besides its bytes. */
export interface Delivery {
  readonly session: SmtpSession.State
  readonly envelope: SmtpTransaction.Envelope
}

/** A message a memory store kept. */
export interface StoredMessage extends Delivery {
  readonly id: string
  readonly bytes: Uint8Array
}

/**
 * Storing a message failed: `Full` when the disk or a quota is full (ENOSPC,
 * EDQUOT), `Io` for any other failure. Never the client's fault, so never a 5xx.
 */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  reason: Schema.Literals(["Full", "Io"]),
  message: Schema.String
}) {
  /** The reply for it: `452 4.3.1` when full (RFC 3463), `451 4.3.0` otherwise. */
  get rejection(): Reject.SmtpRejection {
    return this.reason === "Full" ? Reject.insufficientStorage : Reject.storageFailed
  }
}

/** Stores accepted messages. */
export class MessageStore extends Context.Service<MessageStore, {
  /** Stores the whole message, or fails; the result names it (a queue id, a file name). */
  readonly store: (
    delivery: Delivery,
    body: Stream.Stream<Uint8Array, DataError>
  ) => Effect.Effect<string, DataError | StorageError>
}>()("effect-smtp/MessageStore") {
  /** A store that keeps messages in memory, readable and switchable with `MemoryMessages`. */
  static readonly layerMemory: Layer.Layer<MessageStore | MemoryMessages> = Layer.effectContext(
    Effect.gen(function*() {
      const messages = yield* Ref.make<ReadonlyArray<StoredMessage>>([])
      const fault = yield* Ref.make<StorageError["reason"] | undefined>(undefined)
      const store = MessageStore.of({
        store: (delivery, body) =>
          Effect.gen(function*() {
            const bytes = yield* Stream.mkUint8Array(body)
            const failing = yield* Ref.get(fault)
            if (failing !== undefined) {
              return yield* new StorageError({ reason: failing, message: `memory store switched to fail (${failing})` })
            }
            return yield* Ref.modify(messages, (all) => {
              const id = `m${all.length + 1}`
              return [id, [...all, { ...delivery, id, bytes }]]
            })
          })
      })
      const memory = MemoryMessages.of({ all: Ref.get(messages), failWith: (reason) => Ref.set(fault, reason) })
      return Context.make(MessageStore, store).pipe(Context.add(MemoryMessages, memory))
    })
  )
}

/** The messages a memory store kept, and its fault switch. */
export class MemoryMessages extends Context.Service<MemoryMessages, {
  /** The messages stored so far, in order. */
  readonly all: Effect.Effect<ReadonlyArray<StoredMessage>>
  /** Makes every store from now on fail with `reason`, as a full (`Full`) or broken (`Io`) disk would; `undefined` ends it. */
  readonly failWith: (reason: StorageError["reason"] | undefined) => Effect.Effect<void>
}>()("effect-smtp/MemoryMessages") {}
