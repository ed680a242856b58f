/**
 * The one door into smtp-server's internals.
 *
 * smtp-server stays the protocol engine. This module subclasses its server,
 * connection and command parser and forwards what the engine needs to know or
 * decide to a small typed interface, `Hooks`: admitting connections, each
 * command line (through `CommandPolicy`), each reply, deadlines, the phases.
 * It is the only module that imports smtp-server's internal classes or names
 * an underscore member, and `missing` tells, before a server starts, which
 * member it relies on the installed smtp-server lacks.
 */
import * as net from "node:net"
import type { Duplex } from "node:stream"
import * as tls from "node:tls"
import { SMTPServer } from "smtp-server"
import type { SMTPServerOptions } from "smtp-server"
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js"
import { SMTPStream } from "smtp-server/lib/smtp-stream.js"
import type { SmtpReply } from "../../phases/Accept.ts"
import * as Reject from "../../phases/Reject.ts"
import * as CommandPolicy from "./CommandPolicy.ts"
import type { Connection, Hooks, Peer, Server, StreamSocket } from "./Hooks.ts"
import * as DataInput from "./DataInput.ts"
import * as Facts from "./Facts.ts"
import { PipelinedInput } from "./PipelinedInput.ts"

/** Members this module overrides or calls (methods, on the prototypes) and reads (fields, on fresh instances). */
const internals = {
  SMTPServer: {
    methods: ["connect", "listen", "close", "_acceptSocket", "_upgrade", "_onError", "_onClientConnect"],
    fields: ["server", "options", "connections", "logger", "_pendingSockets"]
  },
  SMTPConnection: {
    methods: ["init", "connectionReady", "_createParser", "send", "close", "upgrade", "_armTimeout", "_onClose", "_onCommand", "_sendGreeting",
      "handler_XCLIENT", "_proxyCommandAllowed", "_getEnhancedStatusCode"],
    fields: ["_server", "_socket", "_parser", "_nextHandler", "_upgrading", "_closing", "_closed", "session", "secure", "tlsOptions", "openingCommand", "clientHostname"]
  },
  SMTPStream: {
    methods: ["_write", "_feedDataStream", "_endDataMode", "_countDataBytes", "continue"],
    fields: ["_dataMode", "_dataStream", "_remainder", "_lastBytes", "_atDataStart", "isClosed", "_continueCallback"]
  }
} as const

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
    for (const method of internals[name].methods) if (typeof Reflect.get(prototype, method) !== "function") absent.push(`${name}.${method}`)
    for (const field of internals[name].fields) if (!(field in instance)) absent.push(`${name}.${field}`)
  }
  return absent
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

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /
const LF = 0x0a
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
   * smtp-server's DATA reader with the same rules (see `DataInput`), without its per-byte loop and its turn of
   * the event loop per escape dot: each chunk goes to the message stream in one write.
   */
  override _feedDataStream(input: Buffer, done: () => void): void {
    let chunk = input
    if (this._lastBytes !== false && this._lastBytes.length > 0) {
      chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length)
      this._lastBytes = false
    }
    if (this._atDataStart && DataInput.endsAtOnce(chunk)) return this._endDataMode(false, chunk.subarray(3), done)
    if (this._atDataStart && DataInput.escapedAtStart(chunk)) {
      chunk = chunk.subarray(1)
      this._atDataStart = false
    }
    const { content, rest, kept } = DataInput.scan(chunk)
    if (content !== undefined) this._countDataBytes(content.length)
    if (rest !== undefined) return this._endDataMode(content ?? false, rest, done)
    this._lastBytes = kept
    const dataStream = this._dataStream
    if (content === undefined || dataStream === null || !dataStream.writable || dataStream.write(content) || dataStream.destroyed) {
      return done()
    }
    DataInput.whenDrained(dataStream, done)
  }

  override continue(): void {
    // smtp-server clears the callback after running it: one that a second message in the same write set meanwhile was lost.
    const resume = this._continueCallback
    if (typeof resume !== "function") return super.continue()
    this._continueCallback = false
    resume()
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
  private greeted = false
  /** The verb of the command being handled until its final reply (a known one, `AUTH` for a SASL response, or ""), and its line if MAIL or RCPT. */
  private verb = ""
  command = ""
  /** The reply to send in place of smtp-server's next 250, while `acceptWith` runs. */
  private accepted: SmtpReply | undefined = undefined
  /** Whether a greeting is sent at once, or held (and was asked for) while XCLIENT hands the session over. */
  private greeting: "now" | "hold" | "held" = "now"
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

  get ended(): boolean { return this._closing || this._closed }
  get saslResponse(): boolean { return this._nextHandler !== false }
  get helo(): boolean { return this.openingCommand === "HELO" }
  get authenticated(): boolean { return Boolean(this.session.user) }
  // smtp-server makes the envelope when it greets: a client may talk before.
  get inTransaction(): boolean { return Boolean(this.session.envelope?.mailFrom) }
  get draining(): boolean { return this.hooks.draining(this.record) }
  mayProxy(verb: "XCLIENT" | "XFORWARD"): boolean { return this._proxyCommandAllowed(verb, verb === "XCLIENT" ? "useXClient" : "useXForward") }
  ahead(): number { return (this._parser instanceof CommandParser ? this._parser.ahead : 0) + this._socket.readableLength }

  override connectionReady(next?: () => void): void {
    // Once only: the early-talker timer of init() still calls it when the connection was greeted at once.
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
    this.verb = this.saslResponse ? "AUTH" : verdict._tag === "Pass" ? Facts.known(verdict.verb) : Facts.verbOf(command)
    // Text, not the buffer: that may be a slice of a whole read of the socket, kept alive as long as it is.
    this.command = this.verb === "MAIL" || this.verb === "RCPT" ? command.toString() : ""
    this.hooks.received(this.record, command, this.saslResponse)
    if (verdict._tag === "Refuse") return this.refuse(verdict.rejection)
    if (verdict.junk) this.junkCommands++
    if (verdict._tag === "Reject") {
      if (verdict.endsSasl) this._nextHandler = false
      this.reply(verdict.rejection)
      if (callback !== undefined) setImmediate(callback)
      return
    }
    // AUTH is neither offered nor accepted before TLS (unless insecure AUTH is explicitly allowed).
    this.session.disabledCommands = this.hooks.disabledCommands(this.secure)
    super._onCommand(command, callback)
  }

  override send(code: number, data?: string | Array<string> | null, context?: string | false): void {
    const accepted = this.accepted
    if (code === 250 && accepted !== undefined) {
      this.accepted = undefined
      return this.send(accepted.code, `${accepted.enhanced} ${accepted.message}`)
    }
    // smtp-server's own limit on unknown commands is a policy refusal: 4.7.0, not its default 4.4.2.
    if (code === 421 && data === "Error: too many unrecognized commands") return this.refuse(Reject.tooMuchJunk)
    const own = typeof data === "string" && ENHANCED.test(data)
    // smtp-server refuses MAIL and RCPT parameters it cannot parse with a bare 501.
    if (code === 501 && context === undefined && !own && (this.verb === "MAIL" || this.verb === "RCPT")) {
      return this.send(Reject.badParameter.code, `${Reject.badParameter.enhanced} ${typeof data === "string" ? data : Reject.badParameter.message}`)
    }
    // Rejections carry their own enhanced code: keep smtp-server from adding a second one.
    super.send(code, data, own ? false : context)
    this.hooks.replied(this.record, code, this._getEnhancedStatusCode(code, own ? false : context), data ?? "", this.verb, this._socket.destroyed)
    // After its final reply, no command is being handled: a later reply (a timeout's, shutdown's) answers none.
    if (code >= 200 && (code < 300 || code >= 400)) this.verb = ""
    if (code === 421 && own) this.close()
  }

  override _sendGreeting(): void {
    if (this.greeting === "now") return super._sendGreeting()
    this.greeting = "held"
  }

  /** XCLIENT may log the user out; with ADDR it hands the session to the client behind the proxy, greeted once the engine is done. */
  override handler_XCLIENT(command: Buffer, callback: () => void): void {
    const text = command.toString("latin1")
    const handover = !/(?:^|\s)ADDR=/i.test(text) ? "none" : /(?:^|\s)NAME=/i.test(text) ? "named" : "unnamed"
    if (handover !== "none") this.hooks.handingOver(this.record)
    this.greeting = handover === "none" ? "now" : "hold"
    super.handler_XCLIENT(command, () => {
      const handedOver = this.greeting === "held"
      this.greeting = "now"
      this.hooks.proxied(this.record, handedOver ? handover : "none", (rejection) => {
        if (rejection !== undefined) this.refuse(rejection)
        else if (handedOver) super._sendGreeting()
        callback()
      })
    })
  }

  acceptWith(reply: SmtpReply, accept: () => void): void {
    this.accepted = reply // smtp-server answers within `accept`
    accept()
    this.accepted = undefined
  }

  named(hostname: string): void { this.clientHostname = this.session.clientHostname = hostname }

  reply(rejection: Reject.SmtpRejection): void { this.send(rejection.code, `${rejection.enhanced} ${rejection.message}`) }

  refuse(rejection: Reject.SmtpRejection): void {
    this.reply(rejection)
    this.close()
  }

  get socket(): Duplex { return this._socket }

  override upgrade(callback: () => void, secureCallback?: () => void): void {
    // upgrade() removes every listener from the plaintext socket: the engine's too.
    this.hooks.upgrading(this.record)
    super.upgrade(callback, secureCallback)
  }

  override _armTimeout(socket?: net.Socket): void {
    // upgrade() arms the TLS socket it has just made: the handshake must end within its deadline.
    if (socket instanceof tls.TLSSocket && socket !== this._socket && this._upgrading) {
      const cancel = this.hooks.handshakeDeadline(() => socket.destroy(handshakeTimedOut()))
      socket.once("secure", cancel)
      socket.once("close", cancel)
    }
    super._armTimeout(socket)
  }

  override _onClose(): void {
    super._onClose()
    this.hooks.lineOpen(this.record, false)
    // Released here (once: the registry's release is idempotent) rather than on the socket's "close": STARTTLS
    // removes every listener from the plaintext socket.
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

  get listener(): net.Server { return this.server }

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
      this.hooks.refused(socket, client, refused)
      return false
    }
    const connection = new HookedConnection(this, socket, peer, client, this.hooks.count(client, "connection"))
    this.connections.add(connection)
    connection.on("error", (error: Error) => this._onError(error))
    connection.on("connect", (data: Parameters<SMTPServer["_onClientConnect"]>[0]) => this._onClientConnect(data))
    connection.init()
    // Without smtp-server's wait for clients that talk first.
    if (greetNow) connection.connectionReady()
    return true
  }

  override _acceptSocket(socket: net.Socket, handshake: boolean): (() => void) | false {
    if (!handshake) return super._acceptSocket(socket, handshake)
    // Nothing can be said before the handshake: a connection past a limit is dropped.
    const client = socket.remoteAddress ?? ""
    const refused = this.hooks.admit(client)
    if (refused !== undefined) {
      this.hooks.dropped(client, refused)
      socket.on("error", () => undefined)
      socket.destroy()
      return false
    }
    const release = super._acceptSocket(socket, handshake)
    if (release === false) return false
    const uncount = this.hooks.count(client, "handshake")
    socket.once("close", uncount)
    return () => {
      uncount()
      release()
    }
  }

  override _upgrade(socket: net.Socket, callback: (error: Error | null, tlsSocket?: tls.TLSSocket) => void): void {
    // The handshake must end within its deadline, however its bytes trickle in. The TLS socket is the one to
    // destroy: tearing the raw one down under it would skip its error handling.
    const cancel = this.hooks.handshakeDeadline(() => (this._pendingSockets.get(socket) ?? socket).destroy(handshakeTimedOut()))
    super._upgrade(socket, (error, tlsSocket) => {
      cancel()
      callback(error, tlsSocket)
    })
  }
}

/** An smtp-server instance wired to `hooks`. */
export const make = <C>(options: SMTPServerOptions, hooks: Hooks<C>): Server => new HookedServer(options, hooks)
