/**
 * The server's settings: typed, validated, with safe defaults.
 *
 * `layer(options)` takes settings from code, `layerConfig` reads them through
 * Effect's `Config` (environment variables `SMTP_HOST`, `SMTP_PORT`, … by
 * default). Both validate every field with Schema and check the settings
 * against each other: a contradiction (implicit TLS without a certificate,
 * required AUTH that can never be offered) fails the Layer with an error that
 * names it.
 */
import * as os from "node:os"
import * as tls from "node:tls"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import type { Phase } from "../phases/SmtpApp.ts"
import * as SelfSignedCertificate from "../internal/SelfSignedCertificate.ts"

/** A certificate and its private key, both PEM. */
export interface TlsCertificate {
  readonly cert: string
  readonly key: Redacted.Redacted<string>
}

/** The resolved settings. */
export interface Settings {
  /** Listen address. */
  readonly host: string
  /** Listen port; 0 picks a free one (read it from `SmtpServer`). */
  readonly port: number
  /** The name in the greeting and in the EHLO reply. */
  readonly hostname: string
  /** Text appended to the greeting. */
  readonly banner: Option.Option<string>
  /** Largest message accepted, in bytes: advertised with SIZE and enforced (`552 5.3.4`). */
  readonly maxMessageSize: number
  /** Recipients per message (`452 4.5.3` past it). */
  readonly maxRecipients: number
  /** Simultaneous connections (`421 4.7.0` past it). */
  readonly maxClients: number
  /** A connection with no traffic for this long is closed. */
  readonly idleTimeout: Duration.Duration
  /** On shutdown, how long messages in flight may take to finish. */
  readonly shutdownTimeout: Duration.Duration
  /** How long each phase's handlers may run before the command gets `451 4.4.1`. */
  readonly phaseTimeouts: Readonly<Record<Phase, Duration.Duration>>
  /**
   * The certificate for STARTTLS (or implicit TLS); `None` disables TLS. Never smtp-server's built-in one,
   * whose private key is public.
   */
  readonly tls: Option.Option<TlsCertificate>
  /** TLS from the first byte (port 465 style) instead of STARTTLS. */
  readonly implicitTls: boolean
  /** SASL mechanisms offered after TLS. */
  readonly authMethods: ReadonlyArray<"PLAIN" | "LOGIN">
  /** Mail is accepted only from authenticated sessions (`530 5.7.0`). */
  readonly authRequired: boolean
  /** Offer AUTH without TLS: for localhost development only. */
  readonly allowInsecureAuth: boolean
  /** A bare CR or LF in DATA: reject the message (`550 5.5.2`) or rewrite it to CRLF. */
  readonly bareLineEndings: "reject" | "normalize"
  /** NUL bytes in DATA: reject the message (`550 5.6.0`) or strip them. */
  readonly nulBytes: "reject" | "strip"
  /** Longest DATA line accepted, in bytes without CRLF (`550 5.6.0` past it). */
  readonly maxLineLength: number
  /** Simultaneous connections from one client address (`421 4.7.0` past it). */
  readonly maxConnectionsPerClient: number
  /** NOOP, RSET, HELP, VRFY, EXPN and unknown commands per connection (`421 4.7.0` and close past it). */
  readonly maxJunkCommands: number
  /** Failed AUTH attempts per connection (`421 4.7.0` and close at it). */
  readonly maxAuthFailures: number
  /** Each failed AUTH is answered after this delay times the failures so far. */
  readonly authFailureDelay: Duration.Duration
  /** From the 354 reply to the end of the message, however the bytes trickle in (`421 4.4.2` and close past it). */
  readonly dataTimeout: Duration.Duration
  /** From the first byte of a command line to its end, however the bytes trickle in (`421 4.4.2` and close past it). */
  readonly commandTimeout: Duration.Duration
  /**
   * Slowest average rate a message may arrive at, in bytes per second, after a grace of `idleTimeout`
   * (`421 4.4.2` and close below it).
   */
  readonly minDataRate: number
  /** From the start of a TLS handshake (STARTTLS or implicit TLS) to its end; the connection closes past it. */
  readonly tlsHandshakeTimeout: Duration.Duration
  /** How long a client may leave the server's replies unread once they fill the socket; it is disconnected past it. */
  readonly writeStallTimeout: Duration.Duration
  /**
   * A command sent before the reply to EHLO, HELO, DATA or STARTTLS, or any pipelining after HELO (RFC 2920):
   * `554 5.5.0` and close. Bytes behind STARTTLS close the connection whatever this says.
   */
  readonly rejectUnauthorizedPipelining: boolean
}

/** Settings as given: every field optional. */
export interface Options {
  readonly host?: string
  readonly port?: number
  readonly hostname?: string
  readonly banner?: string
  readonly maxMessageSize?: number
  readonly maxRecipients?: number
  readonly maxClients?: number
  readonly idleTimeout?: Duration.Input
  readonly shutdownTimeout?: Duration.Input
  readonly phaseTimeouts?: Partial<Record<Phase, Duration.Input>>
  /** A certificate and key, or `"self-signed"`: one made at start-up for `hostname`, for development. */
  readonly tls?: TlsCertificate | "self-signed"
  readonly implicitTls?: boolean
  readonly authMethods?: ReadonlyArray<"PLAIN" | "LOGIN">
  readonly authRequired?: boolean
  readonly allowInsecureAuth?: boolean
  readonly bareLineEndings?: "reject" | "normalize"
  readonly nulBytes?: "reject" | "strip"
  readonly maxLineLength?: number
  readonly maxConnectionsPerClient?: number
  readonly maxJunkCommands?: number
  readonly maxAuthFailures?: number
  readonly authFailureDelay?: Duration.Input
  readonly dataTimeout?: Duration.Input
  readonly commandTimeout?: Duration.Input
  readonly minDataRate?: number
  readonly tlsHandshakeTimeout?: Duration.Input
  readonly writeStallTimeout?: Duration.Input
  readonly rejectUnauthorizedPipelining?: boolean
}

/** The settings are invalid or contradict each other. */
export class SmtpConfigError extends Schema.TaggedError<SmtpConfigError>()("SmtpConfigError", {
  message: Schema.String
}) {}

/** The defaults: safe for a server that faces the Internet. */
export const defaults: Settings = {
  host: "127.0.0.1",
  port: 2525,
  hostname: os.hostname(),
  banner: Option.none(),
  maxMessageSize: 25 * 1024 * 1024,
  maxRecipients: 100,
  maxClients: 1000,
  idleTimeout: Duration.minutes(5),
  shutdownTimeout: Duration.seconds(8),
  phaseTimeouts: {
    connect: Duration.seconds(30),
    secure: Duration.seconds(30),
    auth: Duration.seconds(30),
    mailFrom: Duration.seconds(30),
    rcptTo: Duration.seconds(30),
    data: Duration.minutes(5),
    close: Duration.seconds(10)
  },
  tls: Option.none(),
  implicitTls: false,
  authMethods: ["PLAIN", "LOGIN"],
  authRequired: false,
  allowInsecureAuth: false,
  bareLineEndings: "reject",
  nulBytes: "reject",
  maxLineLength: 10_000,
  maxConnectionsPerClient: 20,
  maxJunkCommands: 100,
  maxAuthFailures: 3,
  authFailureDelay: Duration.seconds(1),
  dataTimeout: Duration.minutes(10),
  commandTimeout: Duration.minutes(1),
  minDataRate: 500,
  tlsHandshakeTimeout: Duration.seconds(30),
  writeStallTimeout: Duration.minutes(1),
  rejectUnauthorizedPipelining: true
}

const Checked = Schema.Struct({
  host: Schema.NonEmptyString,
  port: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 })),
  hostname: Schema.String.check(Schema.isPattern(/^[A-Za-z0-9.-]{1,253}$/, { message: "a host name" })),
  maxMessageSize: Schema.Int.check(Schema.isGreaterThan(0)),
  maxRecipients: Schema.Int.check(Schema.isGreaterThan(0)),
  maxClients: Schema.Int.check(Schema.isGreaterThan(0)),
  maxLineLength: Schema.Int.check(Schema.isGreaterThanOrEqualTo(998)),
  maxConnectionsPerClient: Schema.Int.check(Schema.isGreaterThan(0)),
  maxJunkCommands: Schema.Int.check(Schema.isGreaterThan(0)),
  maxAuthFailures: Schema.Int.check(Schema.isGreaterThan(0)),
  minDataRate: Schema.Int.check(Schema.isGreaterThan(0)),
  bareLineEndings: Schema.Literals(["reject", "normalize"]),
  nulBytes: Schema.Literals(["reject", "strip"])
})
const decodeChecked = Schema.decodeUnknownEffect(Checked)

const phases: ReadonlyArray<Phase> = ["connect", "secure", "auth", "mailFrom", "rcptTo", "data", "close"]

const fail = (message: string) => Effect.fail(new SmtpConfigError({ message }))

const duration = (name: string, input: Duration.Input | undefined, fallback: Duration.Duration) =>
  input === undefined ? Effect.succeed(fallback) : Option.match(Duration.fromInput(input), {
    onNone: () => fail(`${name}: not a duration: ${String(input)}`),
    onSome: (value) => Duration.isZero(value) ? fail(`${name}: must be longer than zero`) : Effect.succeed(value)
  })

/** The certificate to serve, checked now rather than at a client's first handshake: it loads and matches its key. */
const certificate = (given: TlsCertificate | "self-signed", hostname: string) =>
  Effect.gen(function*() {
    if (given === "self-signed") {
      yield* Effect.logWarning("TLS uses a self-signed certificate made at start-up: for development only")
      return yield* SelfSignedCertificate.make(hostname)
    }
    yield* Effect.try({
      try: () => tls.createSecureContext({ cert: given.cert, key: Redacted.value(given.key) }),
      catch: (error) => new SmtpConfigError({ message: `tls: the certificate or its key cannot be used: ${String(error)}` })
    })
    return given
  })

/** Validates options and fills in the defaults. */
export const resolve = Effect.fnUntraced(function*(options: Options) {
  const merged = { ...defaults, ...options }
  yield* decodeChecked(merged).pipe(
    Effect.mapError((error) => new SmtpConfigError({ message: SchemaIssue.makeFormatterDefault()(error.issue) }))
  )
  const phaseTimeouts = { ...defaults.phaseTimeouts }
  for (const phase of phases) {
    phaseTimeouts[phase] = yield* duration(`phaseTimeouts.${phase}`, options.phaseTimeouts?.[phase], defaults.phaseTimeouts[phase])
  }
  const settings: Settings = {
    ...merged,
    banner: Option.fromNullishOr(options.banner),
    tls: options.tls === undefined ? Option.none() : Option.some(yield* certificate(options.tls, merged.hostname)),
    idleTimeout: yield* duration("idleTimeout", options.idleTimeout, defaults.idleTimeout),
    shutdownTimeout: yield* duration("shutdownTimeout", options.shutdownTimeout, defaults.shutdownTimeout),
    dataTimeout: yield* duration("dataTimeout", options.dataTimeout, defaults.dataTimeout),
    commandTimeout: yield* duration("commandTimeout", options.commandTimeout, defaults.commandTimeout),
    tlsHandshakeTimeout: yield* duration("tlsHandshakeTimeout", options.tlsHandshakeTimeout, defaults.tlsHandshakeTimeout),
    writeStallTimeout: yield* duration("writeStallTimeout", options.writeStallTimeout, defaults.writeStallTimeout),
    authFailureDelay: options.authFailureDelay === undefined
      ? defaults.authFailureDelay
      : yield* duration("authFailureDelay", options.authFailureDelay, defaults.authFailureDelay),
    phaseTimeouts
  }
  if (settings.implicitTls && Option.isNone(settings.tls)) {
    return yield* fail("implicitTls is set but no tls certificate is configured")
  }
  if (settings.authRequired && settings.authMethods.length === 0) {
    return yield* fail("authRequired is set but authMethods is empty")
  }
  if (settings.authRequired && Option.isNone(settings.tls) && !settings.allowInsecureAuth) {
    return yield* fail("authRequired is set but AUTH can never be offered: no tls certificate and allowInsecureAuth is false")
  }
  return settings
})

const optional = <A>(config: Config.Config<A>) => Config.option(config).pipe(Config.map(Option.getOrUndefined))

/** The options read through `Config`, from `SMTP_*` environment variables by default. */
export const options: Config.Config<Options> = Config.all({
  host: optional(Config.String("HOST")),
  port: optional(Config.Int("PORT")),
  hostname: optional(Config.String("HOSTNAME")),
  banner: optional(Config.String("BANNER")),
  maxMessageSize: optional(Config.Int("MAX_SIZE")),
  maxRecipients: optional(Config.Int("MAX_RECIPIENTS")),
  maxClients: optional(Config.Int("MAX_CLIENTS")),
  idleTimeout: optional(Config.Duration("IDLE_TIMEOUT")),
  shutdownTimeout: optional(Config.Duration("SHUTDOWN_TIMEOUT")),
  authRequired: optional(Config.Boolean("AUTH_REQUIRED")),
  allowInsecureAuth: optional(Config.Boolean("ALLOW_INSECURE_AUTH"))
}).pipe(
  Config.map((fields) => Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined))),
  Config.nested("SMTP")
)

/** The server's settings. */
export class SmtpServerConfig extends Context.Service<SmtpServerConfig, Settings>()("effect-smtp/SmtpServerConfig") {
  /** Settings from code. */
  static readonly layer = (options: Options = {}): Layer.Layer<SmtpServerConfig, SmtpConfigError> =>
    Layer.effect(SmtpServerConfig, resolve(options))

  /** Settings from `Config` (the environment by default), on top of `overrides`. */
  static readonly layerConfig = (overrides: Options = {}): Layer.Layer<SmtpServerConfig, SmtpConfigError | Config.ConfigError> =>
    Layer.effect(SmtpServerConfig, Effect.flatMap(options, (read: Options) => resolve({ ...overrides, ...read })))
}
