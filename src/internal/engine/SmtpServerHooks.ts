/**
 * The one door into smtp-server's internals.
 *
 * smtp-server stays the protocol engine. This module subclasses its server,
 * connection and command parser and forwards what the engine needs to know or
 * decide to a small typed interface, `Hooks`: admitting connections, each
 * command line (through `CommandPolicy`), each reply, deadlines, the phases.
 * It is the only module that imports smtp-server's internal classes or names
 * an underscore member, and `check` makes sure, before a server starts, that
 * every member it relies on exists in the installed smtp-server.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { createRequire } from "node:module"
import * as net from "node:net"
import type { Duplex } from "node:stream"
import * as tls from "node:tls"
import { SMTPServer } from "smtp-server"
import type { SMTPServerOptions, SMTPServerSession } from "smtp-server"
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js"
import { SMTPStream } from "smtp-server/lib/smtp-stream.js"
import * as Reject from "../../phases/Reject.ts"
import * as CommandPolicy from "./CommandPolicy.ts"
import { PipelinedInput } from "./PipelinedInput.ts"

/** The installed smtp-server lacks internals the engine is built on. */
export class SmtpServerVersionError extends Schema.TaggedError<SmtpServerVersionError>()("SmtpServerVersionError", {
  version: Schema.String,
  missing: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/** Members this module overrides or calls (methods, on the prototypes) and reads (fields, on fresh instances). */
const internals = {
  SMTPServer: {
    methods: ["connect", "listen", "close", "_acceptSocket", "_upgrade", "_onError", "_onClientConnect"],
    fields: ["server", "options", "connections", "logger", "_pendingSockets"]
  },
  SMTPConnection: {
    methods: ["init", "connectionReady", "_createParser", "send", "close", "upgrade", "_armTimeout", "_onClose", "_onCommand"],
    fields: ["_server", "_socket", "_parser", "_nextHandler", "_upgrading", "_closing", "_closed", "session", "secure", "tlsOptions", "openingCommand"]
  },
  SMTPStream: {
    methods: ["_write", "_feedDataStream", "_endDataMode", "_countDataBytes"],
    fields: ["_dataMode", "_dataStream", "_remainder", "_lastBytes", "_atDataStart", "isClosed"]
  }
} as const

const installedVersion = (): string => {
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
  const classes = {
    SMTPServer: [SMTPServer.prototype, server],
    SMTPConnection: [SMTPConnection.prototype, new SMTPConnection(server, socket, {})],
    SMTPStream: [SMTPStream.prototype, new SMTPStream()]
  } as const
  socket.destroy()
  const absent: Array<string> = []
  for (const name of ["SMTPServer", "SMTPConnection", "SMTPStream"] as const) {
    const [prototype, instance] = classes[name]
    for (const method of internals[name].methods) {
      if (typeof Reflect.get(prototype, method) !== "function") absent.push(`${name}.${method}`)
    }
    for (const field of internals[name].fields) if (!(field in instance)) absent.push(`${name}.${field}`)
  }
  return absent
}

/** Fails when the installed smtp-server lacks anything this module needs. */
export const check: Effect.Effect<void, SmtpServerVersionError> = Effect.suspend(() => {
  const absent = missing()
  if (absent.length === 0) return Effect.void
  const version = installedVersion()
  const message = `smtp-server ${version} lacks ${absent.join(", ")}: effect-smtp is built against smtp-server ~3.21`
  return Effect.fail(new SmtpServerVersionError({ version, missing: absent, message }))
})

/** A stream a connection can run on: what smtp-server's connection uses of a socket besides reading and writing. */
export interface StreamSocket extends Duplex {
  setTimeout(timeout: number, callback?: () => void): this
  readonly readyState: string
}

// smtp-server's types ask for a `net.Socket`, but its connection reads and writes the socket as a stream and uses
// nothing else of it but `setTimeout` and `readyState` (a `tls.TLSSocket` wraps any stream the same way): these
// overloads say so, for connections a listener other than smtp-server's own hands over.
declare module "smtp-server" {
  interface SMTPServer {
    connect(socket: StreamSocket, peer: Peer): void
    _upgrade(socket: StreamSocket, callback: (error: Error | null, tlsSocket?: tls.TLSSocket) => void): void
  }
}

/** Where a connection comes from, for a listener other than smtp-server's own. */
export interface Peer {
  readonly id: string
  readonly remoteAddress: string
  readonly remotePort: number
  readonly localAddress: string
  readonly localPort: number
}

/** What the engine may do with a connection. */
export interface Connection {
  readonly session: SMTPServerSession
  /** The address the connection counts against in the per-client limit. */
  readonly client: string
  /** The connection is closing or closed: nothing more can be said on it. */
  readonly ended: boolean
  /** Answers with `rejection` and reads on. */
  reply(rejection: Reject.SmtpRejection): void
  /** Answers with `rejection` and hangs up: nothing the client sent after it is read. */
  refuse(rejection: Reject.SmtpRejection): void
  /** When replies wait for the client to read them: calls `then` once, when they were read or the socket closed. */
  whenRepliesRead(then: () => void): (() => void) | undefined
  /** Drops the connection. */
  destroy(): void
}

/** What a listener-independent server offers the engine. */
export interface Server {
  /** smtp-server's own errors: a connection's socket failing in the middle of a transaction, for instance. */
  on(event: "error", listener: (error: Error) => void): this
  /** smtp-server's TCP listener. */
  readonly listener: net.Server
  listen(port: number, host: string, listening: () => void): void
  /** Stops listening; `closed` runs once every connection has gone (or smtp-server's close timeout). */
  close(closed: () => void): void
  /** Serves a connection on `socket`; false when a connection limit refused it. */
  accept(socket: StreamSocket, peer: Peer): boolean
  /** Runs smtp-server's implicit TLS handshake on `socket`, then serves the connection. */
  acceptSecure(socket: StreamSocket, peer: Peer, refused: () => void): void
}

/** What the engine decides and hears; `C` is its record of a connection. */
export interface Hooks<C> {
  /** The refusal a new connection from `client` gets, if a connection limit refuses it. */
  readonly admit: (client: string) => Reject.SmtpRejection | undefined
  /** Counts a connection (or an implicit TLS handshake) from `client` until the returned function runs. */
  readonly count: (client: string, kind: "connection" | "handshake") => () => void
  /** A connection begins: the engine's record of it. */
  readonly opened: (connection: Connection) => C
  readonly rules: CommandPolicy.Rules
  /** The server is shutting down for this connection. */
  readonly draining: (record: C) => boolean
  /** The commands not offered on the connection as it is now. */
  readonly disabledCommands: (secure: boolean) => Array<string>
  /** A read ended inside a command line (`true`), or a line was completed or the connection closed. */
  readonly lineOpen: (record: C, open: boolean) => void
  /** A reply was written. */
  readonly replied: (record: C, code: number, text: string) => void
  /** The connection starts STARTTLS. */
  readonly upgrading: (record: C) => void
  /** Arms a deadline: a TLS handshake's, or a refused connection's last chance to read its refusal. */
  readonly deadline: (kind: "tlsHandshake" | "refusedLinger", expire: () => void) => () => void
  /** Logs smtp-server's own messages. */
  readonly logger: SMTPServer["logger"]
}

/** A reply error as smtp-server reads it. */
export type ReplyError = Error & { responseCode: number }

/** The reply error for `rejection`. */
export const replyError = (rejection: Reject.SmtpRejection): ReplyError =>
  Object.assign(new Error(`${rejection.enhanced} ${rejection.message}`), { responseCode: rejection.code })

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /
const CR = 0x0d
const LF = 0x0a
const DOT = 0x2e
/** A line that starts with a dot: an escape, the end of the message, or (leniently) content. */
const LINE_DOT = Buffer.from("\n.")

const handshakeTimedOut = (): Error => Object.assign(new Error("TLS handshake timeout"), { code: "ERR_TLS_HANDSHAKE_TIMEOUT" })

/** smtp-server's parser, telling its connection what the client sent ahead of each command and whether a line is open (exported for its tests). */
export class CommandParser extends SMTPStream {
  readonly input = new PipelinedInput()
  /** The length of the write being processed: the parser's own re-entries handle parts of it. */
  writing: number | undefined = undefined
  lineOpen: (open: boolean) => void = () => undefined

  override _write(chunk: Buffer, encoding: BufferEncoding | "buffer", next: (error?: Error | null) => void): void {
    let done = next
    if (this.writing === undefined) {
      this.writing = chunk.length
      done = (error) => {
        this.writing = undefined
        next(error)
      }
    }
    if (!this._dataMode) this.input.written(chunk, this._remainder.length)
    // A closed parser (its connection gone, or retired by STARTTLS) only drains what it holds.
    if (!this.isClosed) this.lineOpen(!this._dataMode && chunk.length > 0 && chunk[chunk.length - 1] !== LF)
    super._write(chunk, encoding, done)
  }

  /**
   * smtp-server's DATA reader, the same rules without its per-byte loop: a chunk's line-leading dots are found
   * with `indexOf`, and the chunk goes to the message stream in one write, not one per escape dot with a turn of
   * the event loop between them. As upstream: the last 4 bytes wait for the next chunk (the end sequence may
   * straddle it), only CRLF "." CRLF ends the message, a leading ".." loses one dot, and positions upstream never
   * looks at (the first two of a chunk, the last two) are left alone.
   */
  override _feedDataStream(input: Buffer, done: () => void): void {
    const dataStream = this._dataStream
    let chunk = input
    if (this._lastBytes !== false && this._lastBytes.length > 0) {
      chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length)
      this._lastBytes = false
    }
    if (this._atDataStart && chunk.length >= 3 && chunk[0] === DOT && chunk[1] === CR && chunk[2] === LF) {
      return this._endDataMode(false, chunk.subarray(3), done)
    }
    if (this._atDataStart && chunk.length >= 2 && chunk[0] === DOT && chunk[1] === DOT) {
      chunk = chunk.subarray(1)
      this._atDataStart = false
    }
    const length = chunk.length
    const parts: Array<Buffer> = []
    let start = 0
    for (let at = chunk.indexOf(LINE_DOT, 1); at !== -1; at = chunk.indexOf(LINE_DOT, at)) {
      const dot = at + 1
      if (dot >= length - 2) break
      if (chunk[dot - 2] === CR && chunk[dot + 1] === CR && chunk[dot + 2] === LF) {
        parts.push(chunk.subarray(start, dot))
        const content = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
        this._countDataBytes(content.length)
        return this._endDataMode(content, chunk.subarray(dot + 3), done)
      }
      if (chunk[dot + 1] === DOT) {
        parts.push(chunk.subarray(start, dot))
        start = dot + 1
        at = dot + 2
      } else {
        at = dot
      }
    }
    const tail = chunk.subarray(start)
    this._lastBytes = tail.length < 4 ? tail : tail.subarray(tail.length - 4)
    if (tail.length > this._lastBytes.length) parts.push(tail.subarray(0, tail.length - this._lastBytes.length))
    if (parts.length === 0 || dataStream === null) return done()
    const content = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
    this._countDataBytes(content.length)
    if (!dataStream.writable || dataStream.write(content) || dataStream.destroyed) return done()
    // A stream the app destroys never drains, it only closes.
    const resume = () => {
      dataStream.off("drain", resume)
      dataStream.off("close", resume)
      done()
    }
    dataStream.once("drain", resume)
    dataStream.once("close", resume)
  }

  /** Bytes received after the line being handled: the rest of its chunk and the writes queued behind it. */
  get ahead(): number {
    return this.input.rest + this.writableLength - (this.writing ?? 0)
  }
}

/** smtp-server's connection, asking the engine's hooks. Also the facts the command policy reads. */
class HookedConnection<C> extends SMTPConnection implements Connection, CommandPolicy.Facts {
  readonly hooks: Hooks<C>
  readonly record: C
  readonly client: string
  private readonly release: () => void
  private released = false
  private greeted = false
  /** The verb of the command being handled ("" in an AUTH exchange). */
  private verb = ""
  junkCommands = 0
  waited = false

  constructor(server: HookedServer<C>, socket: net.Socket | tls.TLSSocket, peer: Partial<Peer> | undefined, client: string, release: () => void) {
    super(server, socket, peer)
    this.hooks = server.hooks
    this.client = client
    this.release = release
    // A socket that is TLS already makes a secure session whatever the listener: the test kit's secure connections.
    if (socket instanceof tls.TLSSocket && !this.secure) {
      this.session.secure = this.secure = true
      this.tlsOptions = socket.getCipher()
    }
    this.record = this.hooks.opened(this)
  }

  get ended(): boolean {
    return this._closing || this._closed
  }
  get saslResponse(): boolean {
    return this._nextHandler !== false
  }
  get helo(): boolean {
    return this.openingCommand === "HELO"
  }
  get authenticated(): boolean {
    return Boolean(this.session.user)
  }
  get draining(): boolean {
    return this.hooks.draining(this.record)
  }
  ahead(): number {
    return (this._parser instanceof CommandParser ? this._parser.ahead : 0) + this._socket.readableLength
  }

  /** Greets without smtp-server's wait for clients that talk first. */
  greetNow(): void {
    this.connectionReady()
  }
  override connectionReady(next?: () => void): void {
    // Once only: the early-talker timer of init() still calls it after greetNow.
    if (this.greeted) return
    this.greeted = true
    super.connectionReady(next)
  }

  override _createParser(): SMTPStream {
    // Runs inside smtp-server's constructor, before this class's fields exist.
    const parser = new CommandParser({ maxCommandLength: this._server.options.maxCommandLength })
    parser.lineOpen = (open) => this.hooks.lineOpen(this.record, open && !this._upgrading)
    parser.oncommand = (command, callback) => {
      parser.input.dispatched(command)
      this._onCommand(command, callback)
    }
    // The parser fails only on a line far longer than any command may be.
    parser.on("error", () => this.refuse(Reject.overlongInput))
    return parser
  }

  override _onCommand(command: Buffer, callback?: () => void): void {
    if (this._upgrading) return super._onCommand(command, callback)
    const verdict = CommandPolicy.decide(this.hooks.rules, this, command)
    if (verdict._tag === "WaitTurn") {
      this.waited = true
      return void setImmediate(() => this.ended || this._onCommand(command, callback))
    }
    this.waited = false
    if (verdict._tag === "Refuse") return this.refuse(verdict.rejection)
    if (verdict.junk) this.junkCommands++
    if (verdict._tag === "Reject") {
      if (verdict.endsSasl) this._nextHandler = false
      this.reply(verdict.rejection)
      if (callback !== undefined) setImmediate(callback)
      return
    }
    this.verb = verdict.verb
    // AUTH is neither offered nor accepted before TLS (unless insecure AUTH is explicitly allowed).
    this.session.disabledCommands = this.hooks.disabledCommands(this.secure)
    super._onCommand(command, callback)
  }

  override send(code: number, data?: string | Array<string> | null, context?: string | false): void {
    // smtp-server's own limit on unknown commands is a policy refusal: 4.7.0, not its default 4.4.2.
    if (code === 421 && data === "Error: too many unrecognized commands") return this.refuse(Reject.tooMuchJunk)
    const own = typeof data === "string" && ENHANCED.test(data)
    // smtp-server refuses MAIL and RCPT parameters it cannot parse with a bare 501.
    if (code === 501 && context === undefined && !own && (this.verb === "MAIL" || this.verb === "RCPT")) {
      return this.send(Reject.badParameter.code, `${Reject.badParameter.enhanced} ${typeof data === "string" ? data : Reject.badParameter.message}`)
    }
    // Rejections carry their own enhanced code: keep smtp-server from adding a second one.
    super.send(code, data, own ? false : context)
    this.hooks.replied(this.record, code, typeof data === "string" ? data : String(data))
    if (code === 421 && own) this.close()
  }

  reply(rejection: Reject.SmtpRejection): void {
    this.send(rejection.code, `${rejection.enhanced} ${rejection.message}`)
  }

  refuse(rejection: Reject.SmtpRejection): void {
    this.reply(rejection)
    this.close()
  }

  whenRepliesRead(then: () => void): (() => void) | undefined {
    const socket = this._socket
    if (!socket.writableNeedDrain || socket.destroyed) return undefined
    const done = () => {
      socket.off("drain", done)
      socket.off("close", done)
      then()
    }
    socket.once("drain", done)
    socket.once("close", done)
    return () => {
      socket.off("drain", done)
      socket.off("close", done)
    }
  }

  destroy(): void {
    this._socket.destroy()
  }

  override upgrade(callback: () => void, secureCallback?: () => void): void {
    // upgrade() removes every listener from the plaintext socket: the engine's too.
    this.hooks.upgrading(this.record)
    super.upgrade(callback, secureCallback)
  }

  override _armTimeout(socket?: net.Socket): void {
    // upgrade() arms the TLS socket it has just made: the handshake must end within its deadline.
    if (socket instanceof tls.TLSSocket && socket !== this._socket && this._upgrading) {
      const cancel = this.hooks.deadline("tlsHandshake", () => socket.destroy(handshakeTimedOut()))
      socket.once("secure", cancel)
      socket.once("close", cancel)
    }
    super._armTimeout(socket)
  }

  override _onClose(): void {
    super._onClose()
    this.hooks.lineOpen(this.record, false)
    // Released here rather than on the socket's "close": STARTTLS removes every listener from the plaintext socket.
    if (this.released) return
    this.released = true
    this.release()
  }
}

/** smtp-server's server, admitting connections through the hooks. */
class HookedServer<C> extends SMTPServer implements Server {
  readonly hooks: Hooks<C>

  constructor(options: SMTPServerOptions, hooks: Hooks<C>) {
    super(options)
    this.hooks = hooks
    // smtp-server wraps a logger it is given in one that formats every message first: the engine's takes them as
    // they are, and a level below the minimum costs an empty call.
    this.logger = hooks.logger
  }

  get listener(): net.Server {
    return this.server
  }

  /** Sockets handed over by `accept`: their clients wait for the greeting. */
  private readonly handedOver = new WeakSet<object>()
  /** Whether the last connection `connect` was given was served (not refused by a limit). */
  private served = false

  override connect(socket: net.Socket | tls.TLSSocket, peer?: Partial<Peer> | null): void {
    this.served = this.serve(socket, peer ?? undefined, this.handedOver.has(socket))
  }

  accept(socket: StreamSocket, peer: Peer): boolean {
    this.handedOver.add(socket)
    // Through smtp-server's type, whose overload takes any stream socket; the override above runs.
    const server: SMTPServer = this
    server.connect(socket, peer)
    return this.served
  }

  acceptSecure(socket: StreamSocket, peer: Peer, refused: () => void): void {
    const server: SMTPServer = this
    server._upgrade(socket, (error, tlsSocket) => {
      if (error === null && tlsSocket !== undefined && this.accept(tlsSocket, peer)) return
      refused()
      socket.destroy()
    })
  }

  /** Serves `socket`, or refuses it past a connection limit. `greetNow`: the client is known to wait for the greeting. */
  private serve(socket: net.Socket | tls.TLSSocket, peer: Partial<Peer> | undefined, greetNow: boolean): boolean {
    const client = peer?.remoteAddress ?? socket.remoteAddress ?? ""
    const refused = this.hooks.admit(client)
    if (refused !== undefined) {
      this.logger.info({ host: client, tnx: "refused" }, "refused %s: %s", client, refused.message)
      socket.on("error", () => undefined)
      // Reads and drops what the client sends, so its FIN is seen, and never holds the socket for long.
      socket.resume()
      const cancel = this.hooks.deadline("refusedLinger", () => socket.destroy())
      socket.once("close", cancel)
      socket.end(`${refused.line}\r\n`)
      return false
    }
    const connection = new HookedConnection(this, socket, peer, client, this.hooks.count(client, "connection"))
    this.connections.add(connection)
    connection.on("error", (error: Error) => this._onError(error))
    connection.on("connect", (data: Parameters<SMTPServer["_onClientConnect"]>[0]) => this._onClientConnect(data))
    connection.init()
    if (greetNow) connection.greetNow()
    return true
  }

  override _acceptSocket(socket: net.Socket, handshake: boolean): (() => void) | false {
    if (!handshake) return super._acceptSocket(socket, handshake)
    // Nothing can be said before the handshake: a connection past a limit is dropped.
    const client = socket.remoteAddress ?? ""
    const refused = this.hooks.admit(client)
    if (refused !== undefined) {
      this.logger.info({ host: client, tnx: "refused" }, "refused %s before its TLS handshake: %s", client, refused.message)
      socket.on("error", () => undefined)
      socket.destroy()
      return false
    }
    const release = super._acceptSocket(socket, handshake)
    if (release === false) return false
    const uncount = this.hooks.count(client, "handshake")
    let counted = true
    const done = () => {
      if (!counted) return
      counted = false
      uncount()
    }
    socket.once("close", done)
    return () => {
      done()
      release()
    }
  }

  override _upgrade(socket: net.Socket, callback: (error: Error | null, tlsSocket?: tls.TLSSocket) => void): void {
    // The handshake must end within its deadline, however its bytes trickle in. The TLS socket is the one to
    // destroy: tearing the raw one down under it would skip its error handling.
    const cancel = this.hooks.deadline("tlsHandshake", () => (this._pendingSockets.get(socket) ?? socket).destroy(handshakeTimedOut()))
    super._upgrade(socket, (error, tlsSocket) => {
      cancel()
      callback(error, tlsSocket)
    })
  }
}

/** An smtp-server instance wired to `hooks`. */
export const make = <C>(options: SMTPServerOptions, hooks: Hooks<C>): Server => new HookedServer(options, hooks)
