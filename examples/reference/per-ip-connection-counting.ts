/**
 * Fumi "Rate Limiting": open connections counted per client address. The counts are shared by all connections,
 * so they are a service of the app's (a Ref), keyed by IP; the close phase, which runs for every connection the
 * connect phase saw (also the refused ones), gives the slot back. effect-smtp also has this built in:
 * the `maxConnectionsPerClient` setting.
 */
import { Context, Effect, flow, Layer, Ref } from "effect"
import { Reject, SmtpApp, SmtpSession } from "effect-smtp"

// #region fumi-middleware: Rate Limiting
export class Connections extends Context.Service<Connections, Ref.Ref<Readonly<Record<string, number>>>>()("app/Connections") {
  static readonly layer = Layer.effect(Connections, Ref.make({}))
}

export const rateLimit = flow(
  SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      const { remoteAddress: ip } = yield* SmtpSession.current
      const counts = yield* Ref.updateAndGet(yield* Connections, (counts) => ({ ...counts, [ip]: (counts[ip] ?? 0) + 1 }))
      if ((counts[ip] ?? 0) > 10) return yield* Reject.closing("4.7.0", "Too many connections")
      yield* next
    })
  ),
  SmtpApp.onClose(() =>
    Effect.gen(function*() {
      const { remoteAddress: ip } = yield* SmtpSession.current
      yield* Ref.update(yield* Connections, (counts) => ({ ...counts, [ip]: Math.max(0, (counts[ip] ?? 0) - 1) }))
    })
  )
)
// #endregion

export const app = SmtpApp.empty.pipe(rateLimit)
