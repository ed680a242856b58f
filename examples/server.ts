/**
 * The README example: a small receiving server, Fumi style, one middleware per phase.
 * Run it with `node server.ts` where effect-smtp is installed (`npm run example` here);
 * `examples/server.test.ts` drives it over SMTP and the consumer test runs it from the packed tarball.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Context, Effect, Layer, Redacted, Stream } from "effect"
import { Credentials, MailFrom, Message, RcptTo, Reject, SmtpApp, SmtpServer, SmtpServerConfig, SmtpSession } from "effect-smtp"

// The app's own dependency: who may log in.
export class Users extends Context.Service<Users, {
  readonly check: (name: string, password: string) => Effect.Effect<boolean>
}>()("example/Users") {
  static readonly layer = Layer.succeed(Users, {
    check: (name, password) => Effect.succeed(name === "alice" && password === "wonderland")
  })
}

const denylist = new Set(["192.0.2.66"])
const localDomains = new Set(["example.test"])

export const app = SmtpApp.empty.pipe(
  SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      if (denylist.has(session.remoteAddress)) return yield* Reject.permanent(554, "5.7.1", "Your address is denied")
      yield* next
    })
  ),
  SmtpApp.onAuth((next) =>
    Effect.gen(function*() {
      const { username, password } = yield* Credentials
      const users = yield* Users
      if (yield* users.check(username, Redacted.value(password))) return // accepted
      yield* next // nobody else accepts: 535 5.7.8
    })
  ),
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      if (!session.secure) return yield* Reject.permanent(530, "5.7.0", "Must issue a STARTTLS command first")
      yield* MailFrom // the sender, decoded, if a policy needs it
      yield* next
    })
  ),
  SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      const { mailbox } = yield* RcptTo
      if (!localDomains.has(mailbox.domain)) return yield* Reject.permanent(550, "5.7.1", "Relay access denied")
      yield* next
    })
  ),
  SmtpApp.onData(() =>
    Effect.gen(function*() {
      const message = yield* Message
      const bytes = yield* message.stream.pipe(Stream.runFold(() => 0, (n, chunk) => n + chunk.length))
      yield* Effect.logInfo("received", { bytes })
    })
  )
)

export const server = SmtpServer.layer(app).pipe(Layer.provide(Users.layer))

if (import.meta.main) {
  // Settings from SMTP_* variables; STARTTLS with a development certificate unless SMTP_TLS_CERT/SMTP_TLS_KEY name one.
  const config = SmtpServerConfig.layerConfig({}, { defaults: { tls: "self-signed" } })
  Layer.launch(server.pipe(Layer.provide(config))).pipe(NodeRuntime.runMain)
}
