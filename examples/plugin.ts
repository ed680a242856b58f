/**
 * The README's plugin: connection state and a rcpt to middleware bundled into
 * one plugin with `flow`, run by `examples/plugin.test.ts`.
 */
import { Context, Effect, flow, Layer, Ref } from "effect"
import { Reject, SmtpApp } from "effect-smtp"

class Recipients extends Context.Service<Recipients, Ref.Ref<number>>()("app/Recipients") {}

/** At most `limit` recipients per connection, all its transactions together. */
export const recipientLimit = (limit: number) =>
  flow(
    SmtpApp.withConnectionState(Layer.effect(Recipients, Ref.make(0))),
    SmtpApp.onRcptTo((next) =>
      Effect.gen(function*() {
        const count = yield* Recipients.use(Ref.updateAndGet((n) => n + 1))
        if (count > limit) return yield* Reject.temporary(452, "4.5.3", "Too many recipients")
        yield* next
      })
    )
  )
