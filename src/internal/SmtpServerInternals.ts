/**
 * The parts of smtp-server's internals the engine overrides or reads, checked
 * before a server starts.
 *
 * The engine extends smtp-server's connection, server and parser classes. A
 * release that renamed one of these members would not fail: the override would
 * never be called and a protection would be off without a word. So the engine
 * refuses to start, naming the smtp-server version and what is missing.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { createRequire } from "node:module"
import * as net from "node:net"
import { SMTPServer } from "smtp-server"
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js"
import { SMTPStream } from "smtp-server/lib/smtp-stream.js"

/** The installed smtp-server lacks internals the engine is built on. */
export class SmtpServerVersionError extends Schema.TaggedError<SmtpServerVersionError>()("SmtpServerVersionError", {
  version: Schema.String,
  missing: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/** Methods the engine overrides or calls, by class. */
const methods = {
  SMTPServer: ["connect", "listen", "close", "_acceptSocket", "_upgrade", "_onError", "_onClientConnect"],
  SMTPConnection: [
    "init",
    "connectionReady",
    "_createParser",
    "send",
    "close",
    "upgrade",
    "_armTimeout",
    "_onClose",
    "_onCommand"
  ],
  SMTPStream: ["_write"]
} as const

/** Fields the engine reads, by class: set by the constructors, so looked for on fresh instances. */
const fields = {
  SMTPServer: ["server", "options", "connections", "_pendingSockets"],
  SMTPConnection: [
    "_server",
    "_socket",
    "_parser",
    "_nextHandler",
    "_upgrading",
    "_closing",
    "_closed",
    "session",
    "secure",
    "tlsOptions",
    "openingCommand",
    "remoteAddress"
  ],
  SMTPStream: ["_dataMode", "_remainder"]
} as const

const version = (): string => {
  try {
    const manifest: unknown = createRequire(import.meta.url)("smtp-server/package.json")
    const found = typeof manifest === "object" && manifest !== null ? Reflect.get(manifest, "version") : undefined
    return typeof found === "string" ? found : "unknown"
  } catch {
    return "unknown"
  }
}

/** What the installed smtp-server lacks, as `Class.member`. */
export const missing = (): ReadonlyArray<string> => {
  const server = new SMTPServer({ logger: false })
  const socket = new net.Socket()
  const instances = {
    SMTPServer: server,
    SMTPConnection: new SMTPConnection(server, socket, {}),
    SMTPStream: new SMTPStream()
  }
  const prototypes = {
    SMTPServer: SMTPServer.prototype,
    SMTPConnection: SMTPConnection.prototype,
    SMTPStream: SMTPStream.prototype
  }
  socket.destroy()
  const absent: Array<string> = []
  for (const name of ["SMTPServer", "SMTPConnection", "SMTPStream"] as const) {
    for (const method of methods[name]) {
      if (typeof Reflect.get(prototypes[name], method) !== "function") absent.push(`${name}.${method}`)
    }
    for (const field of fields[name]) {
      if (!(field in instances[name])) absent.push(`${name}.${field}`)
    }
  }
  return absent
}

/** Fails when the installed smtp-server lacks anything the engine needs. */
export const check: Effect.Effect<void, SmtpServerVersionError> = Effect.suspend(() => {
  const absent = missing()
  if (absent.length === 0) return Effect.void
  const installed = version()
  return Effect.fail(
    new SmtpServerVersionError({
      version: installed,
      missing: absent,
      message: `smtp-server ${installed} lacks ${absent.join(", ")}: effect-smtp is built against smtp-server ~3.21`
    })
  )
})
