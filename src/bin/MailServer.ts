/**
 * The mail server the `effect-smtp` command runs, assembled from the
 * package's public modules: its own settings beside the server's, all read
 * from `SMTP_*` variables, and the program that serves until interrupted.
 *
 * It stores every accepted message in a Maildir before answering 250, offers
 * STARTTLS (a self-signed certificate unless one is configured) and, with
 * users, AUTH after STARTTLS and only AUTH'd mail. Its policies are the
 * package's plugins, each switched on by its settings: access lists, require
 * TLS, sender rules, local recipients and mailboxes, rate limits and
 * greylisting (in memory, or shared through Redis with `SMTP_REDIS_URL`). A
 * setting that does not decode, or a server that cannot start, fails with one
 * line naming the variable to fix.
 */
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as SettingsReader from "../internal/SettingsReader.ts"
import * as Maildir from "../layers/Maildir.ts"
import * as Observability from "./Observability.ts"
import { authUsers } from "../plugins/authUsers.ts"
import * as Policies from "./Policies.ts"
import { SmtpListenError, SmtpServer } from "../layers/SmtpServer.ts"
import * as SmtpServerConfig from "../layers/SmtpServerConfig.ts"

/** The variables' prefix. */
export const PREFIX = "SMTP"

/** The command's own settings, beside the server's. */
export const CommandSettings = Schema.Struct({
  maildir: SettingsReader.setting(Schema.NonEmptyString, "./mail", "Maildir root (`tmp`, `new` and `cur` are created if missing)"),
  lineEndings: SettingsReader.setting(
    Schema.Literals(["lf", "crlf"]),
    "lf",
    "line endings of stored messages: `lf` (what mail readers expect) or `crlf` (as received)"
  ),
  ...Policies.fields,
  logFormat: SettingsReader.setting(
    Schema.Literals(Observability.logFormats),
    "logfmt",
    "log lines as `logfmt`, `json` (one object per line, keys in Observability) or `pretty` (for a terminal)"
  ),
  logLevel: SettingsReader.setting(
    Schema.Literals(Observability.logLevels),
    "info",
    "lowest level logged: `trace`, `debug`, `info`, `warn`, `error`, `fatal` or `none`"
  ),
  metricsPort: Schema.OptionFromOptionalKey(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 }))).annotate({
    description: "serve the metrics in Prometheus's text format over HTTP on this port, at `/metrics` (none: not served)"
  }),
  metricsHost: SettingsReader.setting(SmtpServerConfig.IpAddress, "127.0.0.1", "address the metrics endpoint listens on")
})

/**
 * The server settings' defaults of this command: a certificate for STARTTLS even when none is configured, and,
 * with users, mail only from sessions that have logged in.
 */
export const serverDefaults = (withUsers: boolean): SmtpServerConfig.Options => ({ tls: "self-signed", authRequired: withUsers })

const commandVariable = (key: keyof typeof CommandSettings.fields) => SettingsReader.variable(PREFIX, [key])

/** The command's own settings (OpenTelemetry's among them): variable, default and meaning. */
export const commandDocumentation = (): ReadonlyArray<SettingsReader.Row> => {
  const defaults = Schema.decodeUnknownSync(CommandSettings)({})
  return [
    ...Object.entries(CommandSettings.fields).map(([key, schema]) =>
      SettingsReader.row(key, SettingsReader.variable(PREFIX, [key]), schema, Reflect.get(defaults, key))
    ),
    ...Observability.otlpDocumentation
  ]
}

/** Every setting of the command: the server's (with the command's defaults), then its own. */
export const documentation = (): ReadonlyArray<SettingsReader.Row> => [
  ...SmtpServerConfig.documentation(PREFIX, serverDefaults(false)),
  ...commandDocumentation()
]

/** What `effect-smtp --help` prints. */
export const help = (): string =>
  [
    "effect-smtp: a receiving SMTP server that stores every accepted message in a Maildir.",
    "",
    "Usage: effect-smtp [--help]",
    "       effect-smtp hash-password   (prints the hash of the password on standard input, for SMTP_AUTH_USERS)",
    "",
    "Settings come from environment variables (a duration reads like `30 seconds`, a list is comma-separated):",
    "",
    ...documentation().flatMap((row) => [`  ${row.variable}  (default: ${row.default})`, `      ${row.meaning.replaceAll("`", "")}`])
  ].join("\n")

/** A start-up failure: the message names the variable to fix. */
export class StartupError extends Schema.TaggedError<StartupError>()("StartupError", { message: Schema.String }) {}

const readCommandSettings = Effect.gen(function*() {
  const read = yield* Config.all(Object.fromEntries(Object.entries(CommandSettings.fields).map(([key, schema]) => {
    const name = SettingsReader.variable(PREFIX, [key])
    return [key, Policies.lists.has(key) ? SettingsReader.list(name) : SettingsReader.field(schema, name)]
  }))).pipe(Effect.mapError((error) => new StartupError({ message: SettingsReader.describeConfigError(error) })))
  return yield* SettingsReader.decode(
    CommandSettings,
    SettingsReader.defined(read),
    (path) => SettingsReader.variable(PREFIX, path),
    (message) => new StartupError({ message }),
    // Passwords never reach an error message.
    (path) => path[0] === "authUsers"
  )
})

const listenFailure = (error: SmtpListenError): string => {
  const at = `${error.host}:${error.port}`
  switch (error.reason) {
    case "AddressInUse":
      return `${PREFIX}_PORT: ${at} is in use by another program`
    case "AddressNotAvailable":
      return `${PREFIX}_HOST: ${error.host} is not an address of this machine`
    case "PermissionDenied":
      return `${PREFIX}_PORT: not allowed to listen on ${at} (ports below 1024 need privileges)`
    case "Other":
      return `${PREFIX}_HOST, ${PREFIX}_PORT: cannot listen on ${at}: ${error.message}`
  }
}

/**
 * Serves until interrupted, after printing the address it listens on: with the log format and level of the
 * settings, the metrics endpoint they ask for, and OTLP export where `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
 */
export const main = Effect.gen(function*() {
  const command = yield* readCommandSettings
  const otlp = yield* Observability.otlpSettings.pipe(Effect.mapError((error) => new StartupError({ message: SettingsReader.describeConfigError(error) })))
  return yield* Effect.gen(function*() {
    const metrics = yield* Observability.serveMetrics(command.metricsPort, command.metricsHost).pipe(
      Effect.mapError((message) => new StartupError({ message: `${commandVariable("metricsPort")}: ${message}` }))
    )
    return yield* serve(command, metrics)
  }).pipe(
    // The server shuts down (its last sessions end) before the exporters send what they hold.
    Effect.scoped,
    Effect.provide(Observability.exporting(otlp)),
    Effect.provide(Observability.logging(command.logFormat, command.logLevel))
  )
})

const serve = (command: typeof CommandSettings.Type, metrics: Option.Option<string>) => Effect.gen(function*() {
  const withUsers = Policies.hasUsers(command)
  const settings = yield* SmtpServerConfig.read({}, { prefix: PREFIX, defaults: serverDefaults(withUsers) }).pipe(
    Effect.mapError((error) => new StartupError({ message: error.message }))
  )
  if (command.authUsers.length > 0 && Option.isSome(command.authUsersFile)) {
    return yield* new StartupError({
      message: `${commandVariable("authUsers")}, ${commandVariable("authUsersFile")}: set one of them, not both`
    })
  }
  if (settings.authRequired && !withUsers) {
    return yield* new StartupError({ message: `${PREFIX}_AUTH_REQUIRED: nobody could log in: set ${commandVariable("authUsers")}` })
  }
  const receiving = Policies.app(command, settings)
  // With users, authRequired (on by default then) refuses MAIL from sessions that have not logged in (530 5.7.0).
  const serving = withUsers
    ? SmtpServer.layer(receiving.pipe(authUsers)).pipe(Layer.provide(Policies.users(command)))
    : SmtpServer.layer(receiving)

  const server = serving.pipe(
    Layer.provide(Maildir.layer({ root: command.maildir, hostname: settings.hostname, lineEndings: command.lineEndings })),
    Layer.provide(Policies.stores(command)),
    Layer.provide(Policies.mailboxes(command)),
    Layer.provide(Layer.succeed(SmtpServerConfig.SmtpServerConfig, settings))
  )
  const context = yield* Layer.build(server).pipe(
    Effect.mapError((error) => {
      switch (error._tag) {
        case "SmtpListenError":
          return new StartupError({ message: listenFailure(error) })
        case "MaildirError":
          return new StartupError({ message: `${commandVariable("maildir")}: ${error.message}` })
        case "UsersError":
          return new StartupError({ message: `${commandVariable(Option.isSome(command.authUsersFile) ? "authUsersFile" : "authUsers")}: ${error.message}` })
        case "RedisError":
          return new StartupError({
            message: `${commandVariable("redisUrl")}: cannot connect: ${error.cause instanceof Error ? error.cause.message : String(error.cause)}`
          })
        case "SmtpConfigError":
        case "SmtpServerVersionError":
          return new StartupError({ message: error.message })
      }
    })
  )
  const { address } = Context.get(context, SmtpServer)
  const metricsAt = Option.match(metrics, { onNone: () => "", onSome: (url) => `, metrics at ${url}` })
  const listening = `effect-smtp listening on ${address.address}:${address.port}, storing to ${command.maildir}${metricsAt}`
  // With JSON logs, standard output carries log records only.
  yield* command.logFormat === "json" ? Console.error(listening) : Console.log(listening)
  return yield* Effect.never
})
