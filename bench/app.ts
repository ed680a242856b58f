/**
 * The app the effect-smtp benchmark server runs (bench/server.ts), built
 * only with the public API: three
 * pass-through middleware on each of connect, mail from, rcpt to and data
 * (one updates per-connection state in a Ref-backed service, one annotates
 * logs); data drains the stream and accepts; nothing is stored.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import { Message, SmtpApp } from "../src/index.ts"

class Commands extends Context.Service<Commands, Ref.Ref<number>>()("bench/Commands") {
  static readonly layer = Layer.effect(Commands, Ref.make(0))
}

const counting = <E, R>(next: Effect.Effect<void, E, R>) =>
  Effect.andThen(Commands.use((ref) => Ref.update(ref, (n) => n + 1)), next)
const annotated = <E, R>(next: Effect.Effect<void, E, R>) => Effect.annotateLogs(next, "bench", "yes")
const passThrough = <E, R>(next: Effect.Effect<void, E, R>) => next

export const app = SmtpApp.empty.pipe(
  SmtpApp.withConnectionState(Commands.layer),
  SmtpApp.onConnect(counting),
  SmtpApp.onConnect(annotated),
  SmtpApp.onConnect(passThrough),
  SmtpApp.onMailFrom(counting),
  SmtpApp.onMailFrom(annotated),
  SmtpApp.onMailFrom(passThrough),
  SmtpApp.onRcptTo(counting),
  SmtpApp.onRcptTo(annotated),
  SmtpApp.onRcptTo(passThrough),
  SmtpApp.onData(counting),
  SmtpApp.onData(annotated),
  SmtpApp.onData(passThrough),
  SmtpApp.onData(() => Message.use((message) => Stream.runDrain(message.stream)))
)
