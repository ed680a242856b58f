/**
 * Reads settings described by a Schema from Effect's `Config`, one variable
 * per setting, and turns a decoding failure into one line that names what to
 * fix: the variable when the value came from one, the setting otherwise.
 *
 * A variable is named after its setting: the prefix, then each part of the
 * setting's path in CONSTANT_CASE (`phaseTimeouts.mailFrom` under `SMTP` is
 * `SMTP_PHASE_TIMEOUTS_MAIL_FROM`).
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"

/** The annotation that shows a default in the documentation where its value depends on the machine. */
const DefaultText = "effect-smtp/defaultText"

/** A setting: `schema` with a default for when it is not given, and what it means. */
export const setting = <S extends Schema.Top>(schema: S, fallback: S["Encoded"], description: string, defaultText?: string) =>
  schema.pipe(Schema.withDecodingDefaultKey(Effect.succeed(fallback))).annotate({
    description,
    ...(defaultText === undefined ? {} : { [DefaultText]: defaultText })
  })

/** One line of the settings' documentation (the README's tables and `--help`). */
export interface Row {
  readonly setting: string
  readonly variable: string
  readonly default: string
  readonly meaning: string
}

const units: ReadonlyArray<readonly [string, number]> = [["hour", 3_600_000], ["minute", 60_000], ["second", 1000]]

/** A value as the documentation shows it, in the form a variable takes. */
export const show = (value: unknown): string => {
  if (Duration.isDuration(value)) {
    const millis = Duration.toMillis(value)
    const unit = units.find(([, size]) => millis % size === 0)
    if (unit === undefined) return `${millis} millis`
    const count = millis / unit[1]
    return `${count} ${unit[0]}${count === 1 ? "" : "s"}`
  }
  if (Option.isOption(value)) return Option.match(value, { onNone: () => "none", onSome: show })
  if (Array.isArray(value)) return value.length === 0 ? "none" : value.map(show).join(",")
  return String(value)
}

/** The documentation row of `schema`, whose decoded default is `value`. */
export const row = (setting: string, variable: string, schema: Schema.Top, value: unknown): Row => {
  const annotations = Schema.resolveAnnotations(schema)
  const text = annotations?.[DefaultText]
  return {
    setting,
    variable,
    default: typeof text === "string" ? text : show(value),
    meaning: annotations?.description ?? ""
  }
}

/** The variable of a setting (of a list's, for the path of one of its items). */
export const variable = (prefix: string, path: ReadonlyArray<string>): string =>
  [prefix, ...path.filter((part) => !/^\d+$/.test(part)).map((part) => part.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase())]
    .filter((part) => part !== "")
    .join("_")

/** A setting's value read with its own schema's encoding, `undefined` when its variable is not set. */
export const optional = <T>(config: Config.Config<T>): Config.Config<T | undefined> =>
  Config.option(config).pipe(Config.map(Option.getOrUndefined))

/** A comma-separated list from one variable, each item trimmed; its items are checked where it is decoded. */
export const list = (name: string): Config.Config<ReadonlyArray<string> | undefined> =>
  optional(Config.Array(Schema.String, name)).pipe(Config.map((items) => items?.map((item) => item.trim())))

/** The annotation of a setting read as text from its variable, however code may give it. */
const ReadAsText = "effect-smtp/readAsText"

/** `schema`, read as text from a variable (a duration: `30` must not pass as 30 milliseconds). */
export const asText = <S extends Schema.Top>(schema: S) => schema.annotate({ [ReadAsText]: true })

/** Reads the encoded value of `field` from one variable. */
export const field = (schema: Schema.Top, name: string): Config.Config<unknown> =>
  optional(Schema.resolveAnnotations(schema)?.[ReadAsText] === true ? Config.String(name) : Config.schema(Schema.toEncoded(schema), name))

/** An object without the keys whose value is `undefined` (settings that were not given). */
export const defined = (values: Readonly<Record<string, unknown>>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined))

const formatStandard = SchemaIssue.makeFormatterStandardSchemaV1()

/** What `input` holds at `path`, for an error message. */
const valueAt = (input: unknown, path: ReadonlyArray<PropertyKey>): unknown =>
  path.reduce<unknown>((value, key) => typeof value === "object" && value !== null ? Reflect.get(value, key) : undefined, input)

const shown = (value: unknown): string =>
  typeof value === "string" ? JSON.stringify(value) : typeof value === "number" || typeof value === "boolean" ? String(value) : ""

/**
 * The first problem of a decoding failure as one line, named with `name`
 * (given the setting's path): "SMTP_PORT: Expected a value between 0 and 65535, got 70000".
 */
export const describe = (
  error: Schema.SchemaError,
  input: unknown,
  name: (path: ReadonlyArray<string>) => string,
  secret: (path: ReadonlyArray<string>) => boolean = () => false
): string => {
  const [first] = formatStandard(error.issue).issues
  if (first === undefined) return error.message
  const path = (first.path ?? []).map((segment) => typeof segment === "object" ? segment.key : segment)
  const value = secret(path.map(String)) ? "" : shown(valueAt(input, path))
  const where = path.length === 0 ? "settings" : name(path.map(String))
  return `${where}: ${first.message.split("\n")[0]}${value === "" ? "" : `, got ${value}`}`
}

/** A `Config` failure as one line naming its variable (the path of the failed read). */
export const describeConfigError = (error: Config.ConfigError): string => {
  const cause = error.cause
  if (!Schema.isSchemaError(cause)) return cause.message
  const [first] = formatStandard(cause.issue).issues
  if (first === undefined) return cause.message
  // A list's variable, not the position of the item that failed in it.
  const path = (first.path ?? []).map((segment) => typeof segment === "object" ? segment.key : segment)
  return `${path.filter((segment) => typeof segment === "string").join("_")}: ${first.message.split("\n")[0]}`
}

/** Decodes `input` with `schema`; a failure is one line, named with `name`, without the value of a `secret` setting. */
export const decode = <S extends Schema.Top & { readonly DecodingServices: never }, E>(
  schema: S,
  input: unknown,
  name: (path: ReadonlyArray<string>) => string,
  error: (message: string) => E,
  secret?: (path: ReadonlyArray<string>) => boolean
): Effect.Effect<S["Type"], E> =>
  Schema.decodeUnknownEffect(schema)(input).pipe(Effect.mapError((failure) => error(describe(failure, input, name, secret))))
