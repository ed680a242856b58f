/**
 * The connection a phase runs for.
 *
 * One `SmtpSession` exists per connection, from the greeting to the close. Its
 * state is a snapshot the adapter takes once per phase, when a handler first
 * reads it, so a handler reads a consistent snapshot: addresses, TLS, HELO
 * name, the opening command, the login name of a successful AUTH, and how
 * many transactions and messages the connection has had. With the
 * `transcript` setting, it also keeps the session's commands and replies. The app's own user
 * (what its auth middleware accepted) is a service of its own type: see
 * `SmtpApp.onAuth`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"

/** TLS details of a secured connection. */
export interface Tls {
  readonly protocol: string
  readonly cipher: string
  /** The server name the client asked for with SNI. */
  readonly servername: Option.Option<string>
  /** The client's certificate, when the `requestClientCertificate` setting asked for one and the client gave it. */
  readonly peerCertificate: Option.Option<PeerCertificate>
}

/** A TLS client's certificate. */
export interface PeerCertificate {
  /** Its subject's fields (`CN`, `O`, …), several values of one field joined with ", ". */
  readonly subject: Readonly<Record<string, string>>
  readonly issuer: Readonly<Record<string, string>>
  /** SHA-256 fingerprint, as `AB:CD:…`. */
  readonly fingerprint256: string
  readonly validFrom: string
  readonly validTo: string
  /** It verified against the trusted certificate authorities (Node's). */
  readonly verified: boolean
}

/** A snapshot of the connection. */
export interface State {
  /** The connection's id, as in the logs (smtp-server's base32 id). */
  readonly id: string
  readonly localAddress: string
  readonly localPort: number
  readonly remoteAddress: string
  readonly remotePort: number
  /** The client's reverse-DNS name with the `reverseLookup` setting, otherwise (or when none is found) `[address]`. */
  readonly clientHostname: string
  readonly secure: boolean
  readonly tls: Option.Option<Tls>
  /** The name the client gave with HELO, EHLO or LHLO (smtp-server's `hostNameAppearsAs`). */
  readonly heloName: Option.Option<string>
  readonly openingCommand: Option.Option<"HELO" | "EHLO" | "LHLO">
  /** `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPSA`…: the protocol for a Received field. */
  readonly transmissionType: string
  /** The name the client logged in with, once an AUTH was accepted. */
  readonly username: Option.Option<string>
  /**
   * What a proxy said with XCLIENT (`ADDR`, `NAME`, `PORT`, `PROTO`, `HELO`, and the connection's own values as
   * `ADDR:DEFAULT`, …): empty unless the `xclientPeers` setting lets it. After `XCLIENT ADDR=…` the session is the
   * proxied client's: its addresses and name above.
   */
  readonly xClient: ReadonlyMap<string, string>
  /** What a proxy said with XFORWARD (`ADDR`, `NAME`, `PORT`, `PROTO`, `HELO`, `IDENT`, `SOURCE`), with `xforwardPeers`. */
  readonly xForward: ReadonlyMap<string, string>
  /** Mail transactions started (MAIL FROM accepted) on this connection. */
  readonly transactions: number
  /** Messages accepted (DATA answered 250) on this connection. */
  readonly messages: number
}

/** A line of the session's transcript: a command the client sent, or a reply as the client read it. */
export interface TranscriptLine {
  readonly from: "client" | "server"
  /** Without CRLF; a multi-line reply's lines joined with CRLF. AUTH payloads are redacted as in smtp-server's log, messages left out. */
  readonly line: string
}

/** The current connection. */
export class SmtpSession extends Context.Service<SmtpSession, {
  readonly id: string
  readonly state: Effect.Effect<State>
  readonly transcript: Effect.Effect<ReadonlyArray<TranscriptLine>>
}>()("effect-smtp/SmtpSession") {
  /** The current snapshot. */
  static readonly current: Effect.Effect<State, never, SmtpSession> = SmtpSession.use((s) => s.state)
  /** The session's commands and replies so far, with the `transcript` setting (empty without it). */
  static readonly transcript: Effect.Effect<ReadonlyArray<TranscriptLine>, never, SmtpSession> = SmtpSession.use((s) => s.transcript)
}

/** A session service whose state is whatever `current` returns (the adapter's snapshot of the phase). */
const noTranscript: Effect.Effect<ReadonlyArray<TranscriptLine>> = Effect.succeed([])

export const make = (id: string, current: () => State, transcript?: ReadonlyArray<TranscriptLine>): SmtpSession["Service"] =>
  SmtpSession.of({ id, state: Effect.sync(current), transcript: transcript === undefined ? noTranscript : Effect.sync(() => transcript.slice()) })
