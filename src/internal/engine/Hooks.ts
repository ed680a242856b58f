/**
 * What the engine and smtp-server's door (`SmtpServerHooks`) say to each
 * other: the hooks the engine implements, the connection and server the door
 * hands it, and the sockets a listener can hand the door. Types only: nothing
 * here knows smtp-server's internals.
 */
import type * as net from "node:net"
import type { Duplex } from "node:stream"
import type { SMTPServer, SMTPServerSession } from "smtp-server"
import type { SmtpReply } from "../../phases/Accept.ts"
import type * as Reject from "../../phases/Reject.ts"
import type * as CommandPolicy from "./CommandPolicy.ts"

/** A stream a connection can run on: what smtp-server's connection uses of a socket besides reading and writing. */
export interface StreamSocket extends Duplex {
  setTimeout(timeout: number, callback?: () => void): this
  readonly readyState: string
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
  /** Gives the client the host name a reverse lookup found (smtp-server's `clientHostname`). */
  named(hostname: string): void
  /** Answers with `rejection` and reads on. */
  reply(rejection: Reject.SmtpRejection): void
  /** Runs `accept` (which makes smtp-server answer 250), with `reply` sent in place of smtp-server's 250. */
  acceptWith(reply: SmtpReply, accept: () => void): void
  /** Answers with `rejection` and hangs up: nothing the client sent after it is read. */
  refuse(rejection: Reject.SmtpRejection): void
  /** The MAIL or RCPT command line being handled, as the client sent it (the engine reads its address), or "". */
  readonly command: string
  /** The socket smtp-server reads and writes now (the TLS one after STARTTLS). */
  readonly socket: Duplex
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
  /** A connection a limit refused: the engine answers it and lets it go. */
  readonly refused: (socket: StreamSocket, client: string, rejection: Reject.SmtpRejection) => void
  /** Counts a connection (or an implicit TLS handshake) from `client` until the returned function first runs. */
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
  /** An XCLIENT with ADDR is about to hand the session to the client behind a proxy. */
  readonly handingOver: (record: C) => void
  /** After an XCLIENT, and whether it handed the session over (with a NAME or without): a rejection for the client, or none. */
  readonly proxied: (record: C, handover: "none" | "named" | "unnamed", answer: (rejection: Reject.SmtpRejection | undefined) => void) => void
  /** A command line was read: `sasl`, a response within an AUTH exchange. */
  readonly received: (record: C, line: Buffer, sasl: boolean) => void
  /** A connection a limit refused before its TLS handshake: dropped, as nothing can be said to it. */
  readonly dropped: (client: string, rejection: Reject.SmtpRejection) => void
  /**
   * A reply was sent to the command `verb` ("" for none, `AUTH` within an AUTH exchange, `DATA` for the reply to
   * the message too): its code, the enhanced code smtp-server put after it ("" for none) and its text (a line, or
   * the lines of a multi-line reply). `gone`: the client had gone, and nothing was written.
   */
  readonly replied: (record: C, code: number, enhanced: string, text: string | ReadonlyArray<string>, verb: string, gone: boolean) => void
  /** The connection starts STARTTLS. */
  readonly upgrading: (record: C) => void
  /** Arms the deadline of a TLS handshake. */
  readonly handshakeDeadline: (expire: () => void) => () => void
  /** Logs smtp-server's own messages. */
  readonly logger: SMTPServer["logger"]
}

/** A reply error as smtp-server reads it. */
export type ReplyError = Error & { responseCode: number }
