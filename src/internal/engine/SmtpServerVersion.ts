/**
 * The error for an installed smtp-server that lacks internals the engine is
 * built on (`SmtpServerHooks.check` finds them).
 */
import * as Schema from "effect/Schema"
import { createRequire } from "node:module"

/** The installed smtp-server lacks internals the engine is built on. */
export class SmtpServerVersionError extends Schema.TaggedError<SmtpServerVersionError>()("SmtpServerVersionError", {
  version: Schema.String,
  missing: Schema.Array(Schema.String),
  message: Schema.String
}) {}

const installedVersion = (): string => {
  try {
    const version: unknown = Reflect.get(createRequire(import.meta.url)("smtp-server/package.json"), "version")
    return typeof version === "string" ? version : "unknown"
  } catch {
    return "unknown"
  }
}

/** The error naming `absent`, the members the installed smtp-server lacks, as `Class.member`. */
export const versionError = (absent: ReadonlyArray<string>): SmtpServerVersionError => {
  const version = installedVersion()
  const message = `smtp-server ${version} lacks ${absent.join(", ")}: effect-smtp is built against smtp-server ~3.21`
  return new SmtpServerVersionError({ version, missing: absent, message })
}
