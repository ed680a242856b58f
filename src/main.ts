/**
 * The effect-smtp mail server: `npm start`.
 *
 * A receiving SMTP server that stores every accepted message in a Maildir,
 * composed from the library's phases, plugins and layers. Configured with
 * `SMTP_*` environment variables (see the README); an invalid value stops
 * start-up with one line naming the variable and exit code 1. SIGTERM or
 * SIGINT finish the messages in flight and exit 0.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { readFileSync } from "node:fs"
import * as os from "node:os"
import * as Maildir from "./layers/Maildir.ts"
import { SmtpServer } from "./layers/SmtpServer.ts"
import { SmtpServerConfig, type TlsCertificate } from "./layers/SmtpServerConfig.ts"
import * as SmtpApp from "./phases/SmtpApp.ts"
import { deliver } from "./plugins/deliver.ts"
import { localDomains } from "./plugins/localDomains.ts"
import { staticUsers } from "./plugins/staticUsers.ts"

/** A configuration value is invalid: the message names the variable. */
class StartupError extends Schema.TaggedError<StartupError>()("StartupError", { message: Schema.String }) {}

const invalid = (variable: string, expected: string, got: string) =>
  Effect.fail(new StartupError({ message: `${variable}: expected ${expected}, got ${JSON.stringify(got)}` }))

const read = (variable: string) =>
  Config.String(variable).pipe(
    Config.option,
    Effect.map(Option.filter((value) => value !== "")),
    Effect.mapError(() => new StartupError({ message: `${variable}: cannot be read` }))
  )

const integer = (variable: string, fallback: number, minimum: number, maximum: number) =>
  Effect.flatMap(read(variable), Option.match({
    onNone: () => Effect.succeed(fallback),
    onSome: (raw) => {
      const value = Number(raw)
      return /^\d+$/.test(raw) && value >= minimum && value <= maximum
        ? Effect.succeed(value)
        : invalid(variable, `an integer from ${minimum} to ${maximum}`, raw)
    }
  }))

const users = Effect.flatMap(read("SMTP_AUTH_USERS"), Option.match({
  onNone: () => Effect.succeed(new Map<string, Redacted.Redacted<string>>()),
  onSome: (raw) => {
    const pairs = raw.split(",").map((pair) => pair.trim())
    const malformed = pairs.find((pair) => !/^[^:\s]+:\S+$/.test(pair))
    return malformed === undefined
      ? Effect.succeed(new Map(pairs.map((pair) => {
        const at = pair.indexOf(":")
        return [pair.slice(0, at), Redacted.make(pair.slice(at + 1))] as const
      })))
      : Effect.fail(new StartupError({ message: "SMTP_AUTH_USERS: expected comma-separated user:password pairs" }))
  }
}))

const pemFile = (variable: string) =>
  Effect.flatMap(read(variable), Option.match({
    onNone: () => Effect.succeed(Option.none<string>()),
    onSome: (file) =>
      Effect.try({
        try: () => Option.some(readFileSync(file, "utf8")),
        catch: (cause) => new StartupError({ message: `${variable}: cannot read ${file}: ${String(cause)}` })
      })
  }))

/** The certificate files, or a self-signed certificate when neither is given. */
const certificate: Effect.Effect<TlsCertificate | "self-signed", StartupError> = Effect.gen(function*() {
  const cert = yield* pemFile("SMTP_TLS_CERT")
  const key = yield* pemFile("SMTP_TLS_KEY")
  if (Option.isSome(cert) && Option.isSome(key)) {
    return { cert: cert.value, key: Redacted.make(key.value) } satisfies TlsCertificate
  }
  if (Option.isSome(cert) || Option.isSome(key)) {
    return yield* new StartupError({ message: "SMTP_TLS_CERT and SMTP_TLS_KEY: set both or neither" })
  }
  return "self-signed"
})

const main = Effect.gen(function*() {
  const host = Option.getOrElse(yield* read("SMTP_HOST"), () => "127.0.0.1")
  const port = yield* integer("SMTP_PORT", 2525, 0, 65535)
  const hostname = Option.getOrElse(yield* read("SMTP_HOSTNAME"), () => os.hostname())
  if (!/^[A-Za-z0-9.-]{1,253}$/.test(hostname)) return yield* invalid("SMTP_HOSTNAME", "a host name", hostname)
  const maildir = Option.getOrElse(yield* read("SMTP_MAILDIR"), () => "./mail")
  const maxMessageSize = yield* integer("SMTP_MAX_SIZE", 26_214_400, 1, Number.MAX_SAFE_INTEGER)
  const maxRecipients = yield* integer("SMTP_MAX_RECIPIENTS", 100, 1, 100_000)
  const domains = Option.match(yield* read("SMTP_DOMAINS"), {
    onNone: () => [],
    onSome: (raw) => raw.split(",").map((domain) => domain.trim()).filter((domain) => domain !== "")
  })
  const logins = yield* users
  const tls = yield* certificate

  const receiving = SmtpApp.empty.pipe(localDomains(domains), deliver)
  // With users, authRequired makes the server refuse MAIL from sessions that have not logged in (530 5.7.0).
  const app = logins.size > 0 ? receiving.pipe(staticUsers(logins)) : receiving

  const server = SmtpServer.layer(app).pipe(
    Layer.provide(Maildir.layer({ root: maildir, hostname })),
    Layer.provide(SmtpServerConfig.layer({
      host,
      port,
      hostname,
      maxMessageSize,
      maxRecipients,
      tls,
      authRequired: logins.size > 0
    }))
  )
  const context = yield* Layer.build(server).pipe(
    Effect.mapError((error) => new StartupError({ message: error.message }))
  )
  const { address } = Context.get(context, SmtpServer)
  yield* Console.log(`effect-smtp listening on ${address.address}:${address.port}, storing to ${maildir}`)
  return yield* Effect.never
})

main.pipe(
  Effect.scoped,
  Effect.tapError((error) => Console.error(`effect-smtp: ${error.message}`)),
  Effect.provide(Logger.layer([Logger.consoleLogFmt])),
  (program) =>
    NodeRuntime.runMain(program, {
      disableErrorReporting: true,
      // A signal is the normal way to stop the server: exit 0 once the messages in flight are done.
      teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
    })
)
