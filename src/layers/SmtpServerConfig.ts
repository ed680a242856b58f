/**
 * The server's settings: one Schema (`SettingsSchema`) says each setting's
 * type, default, checks and meaning.
 *
 * `layer(options)` takes settings from code; `layerConfig()` reads them with
 * Effect's `Config`, each from the variable named after it (`maxMessageSize`
 * is `SMTP_MAX_MESSAGE_SIZE`, `phaseTimeouts.data` is
 * `SMTP_PHASE_TIMEOUTS_DATA`). Both decode with the same Schema, so a value is
 * checked the same way from either side, and settings that contradict each
 * other fail the Layer with an `SmtpConfigError` naming them.
 */
import * as os from "node:os"
import * as net from "node:net"
import { readFile } from "node:fs/promises"
import * as tls from "node:tls"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as SchemaTransformation from "effect/SchemaTransformation"
import * as SelfSignedCertificate from "../internal/SelfSignedCertificate.ts"
import * as SettingsReader from "../internal/SettingsReader.ts"

/** The settings are invalid or contradict each other; the message names the setting or variable. */
export class SmtpConfigError extends Schema.TaggedError<SmtpConfigError>()("SmtpConfigError", {
  message: Schema.String
}) {}

const setting = SettingsReader.setting

const AuthMethod = Schema.Literals(["PLAIN", "LOGIN"])

const Count = Schema.Int.check(Schema.isGreaterThan(0))

/** An ESMTP parameter keyword (RFC 5321 section 4.1.2), compared without regard to case. */
const ParameterName = Schema.String.check(Schema.isPattern(/^[A-Za-z0-9][A-Za-z0-9-]*$/, { message: "Expected an ESMTP parameter keyword" }))

/** The longest delay Node's timers keep (about 24.8 days); a longer one fires at once. */
const MAX_TIMER_MILLIS = 2 ** 31 - 1

/** A duration longer than zero that a timer can wait: `"30 seconds"`, a `Duration`, or milliseconds in code. */
const Timeout = Schema.Union([
  Schema.DurationFromString,
  Schema.Duration,
  Schema.Number.pipe(Schema.decodeTo(Schema.Duration, SchemaTransformation.durationFromMillis))
]).check(
  Schema.makeFilter((duration: Duration.Duration) => Duration.isGreaterThan(duration, Duration.zero) || "Expected a duration longer than zero"),
  Schema.makeFilter((duration: Duration.Duration) =>
    (Duration.isFinite(duration) && Duration.toMillis(duration) <= MAX_TIMER_MILLIS) || "Expected a duration of at most 24 days"
  )
)

/** A timeout setting; from a variable it is text with a unit (`30 seconds`), never a bare number. */
const timeout = (fallback: string, description: string) => SettingsReader.asText(setting(Timeout, fallback, description))

/** An IPv4 or IPv6 address. */
export const IpAddress = Schema.String.check(Schema.makeFilter((host: string) => net.isIP(host) !== 0 || "Expected an IP address"))

const HOST_NAME = /^[A-Za-z0-9.-]{1,253}$/

const HostName = Schema.String.check(Schema.isPattern(HOST_NAME, { message: "Expected a host name" }))

/** The machine's host name, where it is a valid one. */
const machineName = HOST_NAME.test(os.hostname()) ? os.hostname() : "localhost"

const SingleLine = Schema.String.check(Schema.makeFilter((text: string) => !/[\r\n]/.test(text) || "Expected a single line"))

/** A certificate and its private key, both PEM; checked to load and match now, not at a client's first handshake. */
const Certificate = Schema.Struct({ cert: Schema.String, key: Schema.Redacted(Schema.String) }).check(
  Schema.makeFilter((given) => {
    try {
      tls.createSecureContext({ cert: given.cert, key: Redacted.value(given.key) })
      return true
    } catch (error) {
      return `Expected a certificate and its matching key (${String(error)})`
    }
  })
)

/** A certificate and its private key, both PEM. */
export type TlsCertificate = typeof Certificate.Type

const phaseTimeout = (fallback: string, phase: string) =>
  timeout(fallback, `how long the ${phase} handlers may run before the command gets 451 4.4.1`)

/** Each phase's handler timeout. */
export const PhaseTimeouts = Schema.Struct({
  connect: phaseTimeout("30 seconds", "connect"),
  secure: phaseTimeout("30 seconds", "secure"),
  auth: phaseTimeout("30 seconds", "auth"),
  mailFrom: phaseTimeout("30 seconds", "mail from"),
  rcptTo: phaseTimeout("30 seconds", "rcpt to"),
  data: phaseTimeout("5 minutes", "data"),
  close: phaseTimeout("10 seconds", "close")
})

/** The one definition of every setting: type, default, checks and meaning. */
export const SettingsSchema = Schema.Struct({
  host: setting(IpAddress, "127.0.0.1", "listen address (an IP address; `::` or `0.0.0.0` for all)"),
  port: setting(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 })), 2525, "listen port (`0` picks a free one)"),
  hostname: setting(
    HostName,
    machineName,
    "name in the greeting, the EHLO reply and a self-signed certificate",
    "the machine's host name (localhost if it is not a valid one)"
  ),
  banner: Schema.OptionFromOptionalKey(SingleLine).annotate({ description: "text after the host name in the greeting" }),
  maxMessageSize: setting(Count, 25 * 1024 * 1024, "largest message in bytes, advertised with SIZE (`552 5.3.4` past it)"),
  maxRecipients: setting(Count, 100, "recipients per message (`452 4.5.3` past it)"),
  maxClients: setting(Count, 1000, "simultaneous connections (`421 4.7.0` past it)"),
  maxConnectionsPerClient: setting(Count, 20, "simultaneous connections from one client address (`421 4.7.0` past it)"),
  idleTimeout: timeout("5 minutes", "a connection without traffic for this long is closed"),
  shutdownTimeout: timeout("8 seconds", "on shutdown, how long messages in flight may take to finish"),
  phaseTimeouts: PhaseTimeouts.pipe(Schema.withDecodingDefaultKey(Effect.succeed({}))),
  tls: Schema.OptionFromOptionalKey(Schema.Union([Certificate, Schema.Literal("self-signed")])).annotate({
    description: "certificate for STARTTLS and implicit TLS; without one, no TLS"
  }),
  implicitTls: setting(Schema.Boolean, false, "TLS from the first byte (port 465 style) instead of STARTTLS; needs `tls`"),
  requestClientCertificate: setting(
    Schema.Boolean,
    false,
    "ask TLS clients for a certificate; none, or one that does not verify, is still accepted: the app decides (`tls.peerCertificate`)"
  ),
  authMethods: setting(Schema.Array(AuthMethod), ["PLAIN", "LOGIN"], "SASL mechanisms, offered only when the app has auth middleware"),
  authRequired: setting(Schema.Boolean, false, "mail only from authenticated sessions (`530 5.7.0`)"),
  allowInsecureAuth: setting(Schema.Boolean, false, "offer AUTH without TLS: localhost development only"),
  maxAuthFailures: setting(Count, 3, "failed AUTH attempts per connection (`421 4.7.0` and close at it)"),
  authFailureDelay: timeout("1 second", "each failed AUTH is answered after this delay times the failures so far"),
  bareLineEndings: setting(Schema.Literals(["reject", "normalize"]), "reject", "a bare CR or LF in DATA: `reject` (`550 5.5.2`) or `normalize` to CRLF"),
  nulBytes: setting(Schema.Literals(["reject", "strip"]), "reject", "NUL bytes in DATA: `reject` (`550 5.6.0`) or `strip`"),
  maxLineLength: setting(Schema.Int.check(Schema.isGreaterThanOrEqualTo(998)), 10_000, "longest DATA line in bytes (`550 5.6.0` past it)"),
  xclientPeers: setting(
    Schema.Array(IpAddress),
    [],
    "proxies (IP addresses) allowed XCLIENT: with ADDR, the session starts over for the proxied client (close, then connect middleware)"
  ),
  xforwardPeers: setting(Schema.Array(IpAddress), [], "proxies (IP addresses) allowed XFORWARD: where a relayed message came from becomes the session's address, for logs and trace fields"),
  reverseLookup: setting(Schema.Boolean, false, "look up the client's host name by reverse DNS at connect, for `clientHostname` (otherwise `[address]`)"),
  reverseLookupTimeout: timeout("5 seconds", "how long a reverse lookup may take; past it, `clientHostname` is `[address]`"),
  extraMailParameters: setting(
    Schema.Array(ParameterName),
    [],
    "MAIL FROM parameters the app accepts besides SIZE, BODY, SMTPUTF8, REQUIRETLS, RET and ENVID (others: `555 5.5.4`)"
  ),
  extraRcptParameters: setting(Schema.Array(ParameterName), [], "RCPT TO parameters the app accepts besides NOTIFY and ORCPT (others: `555 5.5.4`)"),
  maxJunkCommands: setting(Count, 100, "NOOP, RSET, HELP, VRFY, EXPN and unknown commands per connection (`421 4.7.0` past it)"),
  commandTimeout: timeout("1 minute", "from the first byte of a command line to its end (`421 4.4.2` past it)"),
  dataTimeout: timeout("10 minutes", "from the 354 reply to the end of the message (`421 4.4.2` past it)"),
  minDataRate: setting(Count, 500, "slowest average message rate in bytes per second, after a grace of `idleTimeout` (`421 4.4.2`)"),
  tlsHandshakeTimeout: timeout("30 seconds", "from the start of a TLS handshake to its end; the connection closes past it"),
  writeStallTimeout: timeout("1 minute", "how long a client may leave its replies unread once they fill the socket"),
  rejectUnauthorizedPipelining: setting(Schema.Boolean, true, "a command sent ahead of a reply it must wait for (RFC 2920): `554 5.5.0` and close"),
  metrics: setting(Schema.Boolean, true, "update the `smtp_*` metrics in the app's metric registry (see Observability)"),
  transcript: setting(
    Schema.Boolean,
    false,
    "keep each session's commands and replies for `SmtpSession.transcript` (AUTH payloads redacted, no message bodies)"
  )
}).check(
  Schema.makeFilter((settings) =>
    settings.implicitTls && Option.isNone(settings.tls) ? { path: ["implicitTls"], issue: "needs a tls certificate" } : true
  ),
  Schema.makeFilter((settings) =>
    settings.authRequired && settings.authMethods.length === 0
      ? { path: ["authMethods"], issue: "empty, but authRequired needs a method" }
      : true
  ),
  Schema.makeFilter((settings) =>
    settings.authRequired && Option.isNone(settings.tls) && !settings.allowInsecureAuth
      ? { path: ["authRequired"], issue: "AUTH can never be offered: no tls certificate and allowInsecureAuth is false" }
      : true
  )
)

/** Settings as given in code: every field optional. */
export type Options = typeof SettingsSchema.Encoded

/** The settings the server runs with: decoded, defaults filled in, the certificate made or loaded. */
export interface Settings extends Omit<typeof SettingsSchema.Type, "tls"> {
  readonly tls: Option.Option<TlsCertificate>
}

/** Decodes `input` (settings named by `name`) and makes a self-signed certificate if one is asked for. */
const decodeSettings = (input: unknown, name: (path: ReadonlyArray<string>) => string) =>
  Effect.gen(function*() {
    const decoded = yield* SettingsReader.decode(
      SettingsSchema,
      input,
      name,
      (message) => new SmtpConfigError({ message }),
      // A certificate's key never reaches a message.
      (path) => path[0] === "tls"
    )
    const tls = Option.getOrUndefined(decoded.tls)
    if (tls === undefined) return { ...decoded, tls: Option.none() } satisfies Settings
    if (tls !== "self-signed") return { ...decoded, tls: Option.some(tls) } satisfies Settings
    yield* Effect.logWarning("TLS uses a self-signed certificate made at start-up: for development only")
    return { ...decoded, tls: Option.some(yield* SelfSignedCertificate.make(decoded.hostname)) } satisfies Settings
  })

/** Validates `options` and fills in the defaults; a setting whose value is `undefined` is not given. */
export const make = (options: Options = {}): Effect.Effect<Settings, SmtpConfigError> =>
  decodeSettings(merge({}, {}, options).values, (path) => path.join("."))

/** A PEM file named by a variable; the value of a `secret` one (the key's) is never shown. */
const pemFile = (name: string, secret: boolean) =>
  Config.String(name).pipe(
    SettingsReader.optional,
    Config.mapEffect((file) =>
      file === undefined || file === "self-signed"
        ? Effect.succeed(file)
        : Effect.tryPromise({
          try: () => readFile(file, "utf8"),
          // The value may be the PEM text itself, or an encoded key: never shown for the key.
          catch: (cause) =>
            new Config.ConfigError(new ConfigProvider.SourceError({
              message: secret || /[\r\n]|-----BEGIN/.test(file)
                ? `${name}: cannot read the file it names (${String(errorCode(cause) ?? cause)}); it takes the path of a PEM file`
                : `${name}: cannot read ${file} (${String(errorCode(cause) ?? cause)})`
            }))
        })
    )
  )

const errorCode = (cause: unknown): unknown => cause instanceof Error && "code" in cause ? cause.code : undefined

/** `tls` from two files, `<prefix>_TLS_CERT` and `<prefix>_TLS_KEY`; the first may say `self-signed` instead. */
const tlsFiles = (prefix: string): Config.Config<TlsCertificate | "self-signed" | undefined> => {
  const certName = SettingsReader.variable(prefix, ["tls", "cert"])
  const keyName = SettingsReader.variable(prefix, ["tls", "key"])
  return Config.all([pemFile(certName, false), pemFile(keyName, true)]).pipe(
    Config.mapEffect(([cert, key]): Effect.Effect<TlsCertificate | "self-signed" | undefined, Config.ConfigError> => {
      if (cert === "self-signed" && key === undefined) return Effect.succeed(cert)
      if (cert === undefined && key === undefined) return Effect.succeed(undefined)
      if (cert === undefined || key === undefined || cert === "self-signed" || key === "self-signed") {
        return Effect.fail(new Config.ConfigError(new ConfigProvider.SourceError({
          message: `${certName} and ${keyName}: set both to PEM files, or ${certName}=self-signed alone`
        })))
      }
      return Effect.succeed({ cert, key: Redacted.make(key) })
    })
  )
}

/**
 * Every setting's reader: the variable named after it under `prefix`, except
 * for the settings `given` names, whose variables are not read at all (a
 * stray `SMTP_PORT` must not stop a server that takes its port elsewhere).
 */
/** The settings a variable gives as a comma-separated list. */
const LISTS: ReadonlySet<string> = new Set(["authMethods", "extraMailParameters", "extraRcptParameters", "xclientPeers", "xforwardPeers"])

const fromVariables = (prefix: string, given: Readonly<Record<string, unknown>>) => {
  const read = (path: ReadonlyArray<string>, schema: Schema.Top) => SettingsReader.field(schema, SettingsReader.variable(prefix, path))
  const givenPhases = given["phaseTimeouts"]
  const phaseTimeouts = Config.all(Object.fromEntries(
    Object.entries(PhaseTimeouts.fields)
      .filter(([phase]) => !(isRecord(givenPhases) && phase in givenPhases))
      .map(([phase, schema]) => [phase, read(["phaseTimeouts", phase], schema)])
  )).pipe(Config.map(SettingsReader.defined))
  const readers: Record<string, Config.Config<unknown>> = {
    ...Object.fromEntries(Object.entries(SettingsSchema.fields).filter(([key]) => key !== "phaseTimeouts" && key !== "tls").map(([key, schema]) => [
      key,
      LISTS.has(key) ? SettingsReader.list(SettingsReader.variable(prefix, [key])) : read([key], schema)
    ])),
    phaseTimeouts,
    tls: tlsFiles(prefix)
  }
  return Config.all(Object.fromEntries(Object.entries(readers).filter(([key]) => key === "phaseTimeouts" || !(key in given))))
}

/** How `layerConfig` reads the settings. */
export interface ConfigOptions {
  /** The variables' prefix: `SMTP` by default, so `port` is `SMTP_PORT`. */
  readonly prefix?: string
  /** Defaults of the application's own, for settings neither `config` nor a variable gives. */
  readonly defaults?: Options
}

/**
 * The settings read with `Config`: each setting `config` gives is read as
 * given (a record of `Config`s, nested like the settings) and its variable is
 * not read; every other one from its variable under `prefix`. A whole
 * `Config<Options>` is read as it is. `defaults` fill in what is left.
 */
export const read = (config: Config.Wrap<Options> = {}, options: ConfigOptions = {}): Effect.Effect<Settings, SmtpConfigError> => {
  const prefix = options.prefix ?? "SMTP"
  const given: Config.Config<unknown> = Config.unwrap(config)
  const merged = Config.isConfig(config)
    ? Config.map(given, (values) => merge(options.defaults ?? {}, {}, values))
    : Config.all([fromVariables(prefix, config), given]).pipe(Config.map(([read, given]) => merge(options.defaults ?? {}, read, given)))
  return merged.pipe(
    Effect.mapError((error) => new SmtpConfigError({ message: SettingsReader.describeConfigError(error) })),
    Effect.flatMap(({ values, named }) =>
      decodeSettings(values, (path) => {
        if (!named.has(path[0] ?? "") && !named.has(path.slice(0, 2).join("."))) return path.join(".")
        // The certificate is read from two variables.
        return path[0] === "tls"
          ? `${SettingsReader.variable(prefix, ["tls", "cert"])} and ${SettingsReader.variable(prefix, ["tls", "key"])}`
          : SettingsReader.variable(prefix, path)
      })
    )
  )
}

/**
 * The settings `given` over the variables' values over `defaults`, groups
 * (`phaseTimeouts`) merged setting by setting, without the settings whose
 * value is `undefined`; and the paths of the settings whose value came from a
 * variable (`port`, `phaseTimeouts.data`).
 */
const merge = (defaults: unknown, read: unknown, given: unknown) => {
  const values: Record<string, unknown> = {}
  const named = new Set<string>()
  const over = (layer: unknown, fromVariable: boolean) => {
    if (!isRecord(layer)) return
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue
      if (isRecord(value)) {
        const existing = values[key]
        const group: Record<string, unknown> = isRecord(existing) ? existing : {}
        values[key] = group
        for (const [setting, inner] of Object.entries(value)) {
          if (inner === undefined) continue
          group[setting] = inner
          if (fromVariable) named.add(`${key}.${setting}`)
          else named.delete(`${key}.${setting}`)
        }
      } else {
        values[key] = value
        if (fromVariable) named.add(key)
        else named.delete(key)
      }
    }
  }
  over(defaults, false)
  over(read, true)
  over(given, false)
  return { values, named }
}

/** A group of settings (`phaseTimeouts`), not a value such as a `Duration` or a certificate. */
const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype && !("cert" in value)

/** Every setting with its variable under `prefix`, its default (or the one in `defaults`) and its meaning. */
export const documentation = (prefix = "SMTP", defaults: Options = {}): ReadonlyArray<SettingsReader.Row> => {
  const values = Schema.decodeUnknownSync(SettingsSchema)(defaults)
  const name = (path: ReadonlyArray<string>) => SettingsReader.variable(prefix, path)
  return Object.entries(SettingsSchema.fields).flatMap(([key, schema]) => {
    if (key === "phaseTimeouts") {
      return Object.entries(PhaseTimeouts.fields).map(([phase, timeout]) =>
        SettingsReader.row(`phaseTimeouts.${phase}`, name([key, phase]), timeout, Reflect.get(values.phaseTimeouts, phase))
      )
    }
    if (key === "tls") {
      const tls = Option.getOrUndefined(values.tls)
      return [
        { setting: "tls", variable: name(["tls", "cert"]), default: typeof tls === "string" ? tls : "none", meaning: tlsCertMeaning },
        { setting: "tls", variable: name(["tls", "key"]), default: "none", meaning: "PEM file of the certificate's private key" }
      ]
    }
    return [SettingsReader.row(key, name([key]), schema, Reflect.get(values, key))]
  })
}

const tlsCertMeaning = "PEM certificate file for STARTTLS and implicit TLS, or `self-signed` (development); without one, no TLS"

/** The server's settings. */
export class SmtpServerConfig extends Context.Service<SmtpServerConfig, Settings>()("effect-smtp/SmtpServerConfig") {
  /** Validates settings from code and fills in the defaults. */
  static readonly make = make

  /** Reads the settings with `Config`, as `layerConfig` does. */
  static readonly read = read

  /** Settings from code. */
  static readonly layer = (options: Options = {}): Layer.Layer<SmtpServerConfig, SmtpConfigError> =>
    Layer.effect(SmtpServerConfig, make(options))

  /**
   * Settings from `Config` (the environment by default): every setting from
   * its variable (`SMTP_PORT`, …), except those `config` gives.
   */
  static readonly layerConfig = (
    config: Config.Wrap<Options> = {},
    options: ConfigOptions = {}
  ): Layer.Layer<SmtpServerConfig, SmtpConfigError> => Layer.effect(SmtpServerConfig, read(config, options))
}
