/**
 * Where accepted messages go.
 *
 * A `MessageStore` takes the envelope and the body stream of a message and
 * stores it durably before the 250 reply: when `store` succeeds the message
 * is safe, when it fails the client gets the rejection (a temporary 451 if
 * storage broke) and nothing may be left behind. `layerMemory` keeps messages
 * in memory for tests; `Maildir` (in layers) writes them to disk.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import type { SmtpRejection } from "../phases/Reject.ts"
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

/** Stores accepted messages. */
export class MessageStore extends Context.Service<MessageStore, {
  /** Stores the message; the result names it (a queue id, a file name). */
  readonly store: (delivery: Delivery, body: Stream.Stream<Uint8Array, SmtpRejection>) => Effect.Effect<string, SmtpRejection>
}>()("effect-smtp/MessageStore") {
  /** A store that keeps messages in memory, readable with `MemoryMessages`. */
  /** A store that keeps messages in memory, readable with `MemoryMessages`. */
  static readonly layerMemory: Layer.Layer<MessageStore | MemoryMessages> = Layer.effectContext(
    Effect.gen(function*() {
      const messages = yield* Ref.make<ReadonlyArray<StoredMessage>>([])
      const store = MessageStore.of({
        store: (delivery, body) =>
          Effect.gen(function*() {
            const bytes = yield* Stream.mkUint8Array(body)
            return yield* Ref.modify(messages, (all) => {
              const id = `m${all.length + 1}`
              return [id, [...all, { ...delivery, id, bytes }]]
            })
          })
      })
      return Context.make(MessageStore, store).pipe(Context.add(MemoryMessages, Ref.get(messages)))
    })
  )
}

/** The messages a memory store kept, in order. */
export class MemoryMessages extends Context.Service<MemoryMessages, Effect.Effect<ReadonlyArray<StoredMessage>>>()(
  "effect-smtp/MemoryMessages"
) {}
