/**
 * The README example: a small receiving server, Fumi style, one middleware per phase.
 * Run it with `node server.ts` where effect-smtp is installed (`npm run example` here);
 * `examples/server.test.ts` drives it over SMTP and the consumer test runs it from the packed tarball.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Context, Effect, Layer, Option, Redacted, Stream } from "effect"
import { Accept, Credentials, MailFrom, Message, RcptTo, Reject, SmtpApp, SmtpServer, SmtpServerConfig, SmtpSession } from "effect-smtp"

// The app's user type: what a successful AUTH gives the later phases.
export class User extends Context.Service<User, { readonly name: string; readonly quota: number }>()("example/User") {}

// The app's own dependency: who may log in.
export class Users extends Context.Service<Users, {
  readonly check: (name: string, password: string) => Effect.Effect<Option.Option<User["Service"]>>
}>()("example/Users") {
  static readonly layer = Layer.succeed(Users, {
    check: (name, password) =>
      Effect.succeed(name === "alice" && password === "wonderland" ? Option.some({ name, quota: 10 }) : Option.none())
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
  SmtpApp.onAuth(User, (next) =>
    Effect.gen(function*() {
      const { username, password } = yield* Credentials
      const user = yield* Users.use((users) => users.check(username, Redacted.value(password)))
      if (Option.isSome(user)) return user.value // accepted: the connection's User from now on
      return yield* next // nobody else accepts: 535 5.7.8
    })
  ),
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      if (!session.secure) return yield* Reject.permanent(530, "5.7.0", "Must issue a STARTTLS command first")
      const sender = yield* MailFrom
      const user = yield* Effect.serviceOption(User) // Option<{ name, quota }>: Some once AUTH accepted
      if (Option.isSome(user)) yield* Accept.ok("2.1.0", `Sender <${sender.address}> ok for ${user.value.name}`)
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
      const { envelope, stream } = yield* Message
      const bytes = yield* stream.pipe(Stream.runFold(() => 0, (n, chunk) => n + chunk.length))
      yield* Effect.logInfo("received", { from: envelope.mailFrom.address, to: envelope.rcptTo.length, bytes })
      yield* Accept.ok("2.0.0", `Ok: ${bytes} bytes received`)
    })
  )
)

export const server = SmtpServer.layer(app).pipe(Layer.provide(Users.layer))

if (import.meta.main) {
  // Settings from SMTP_* variables; STARTTLS with a development certificate unless SMTP_TLS_CERT/SMTP_TLS_KEY name one.
  const config = SmtpServerConfig.layerConfig({}, { defaults: { tls: "self-signed" } })
  Layer.launch(server.pipe(Layer.provide(config))).pipe(NodeRuntime.runMain)
}
