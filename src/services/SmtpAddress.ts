/**
 * Envelope addresses and their ESMTP parameters, decoded with Schema.
 *
 * The engine decodes each path and its parameters once, before any handler
 * runs: the address keeps the raw string the client sent, and the parameters
 * become typed fields (SIZE as a number, BODY, SMTPUTF8, REQUIRETLS, DSN
 * RET/ENVID, RCPT NOTIFY/ORCPT). Anything that does not decode is rejected with
 * the RFC 5321 / RFC 3463 reply for it before a handler sees it.
 */
import * as Data from "effect/Data"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/**
 * A mailbox as the client wrote it, split at its last `@`. A plain data class:
 * the engine has checked it (RFC 5321 sizes, SMTPUTF8) before building it.
 */
export class Mailbox extends Data.Class<{
  /** Exactly what stood between `<` and `>`. */
  readonly raw: string
  readonly localPart: string
  /** The domain, lower-cased (domains are case-insensitive, local parts are not). */
  readonly domain: string
}> {
  /** `localPart@domain`, with the domain lower-cased. */
  get address(): string {
    return `${this.localPart}@${this.domain}`
  }
}

/** MAIL FROM parameters. */
export const MailParams = Schema.Struct({
  size: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  body: Schema.optionalKey(Schema.Literals(["7BIT", "8BITMIME", "BINARYMIME"])),
  smtpUtf8: Schema.Boolean,
  requireTls: Schema.Boolean,
  ret: Schema.optionalKey(Schema.Literals(["FULL", "HDRS"])),
  envid: Schema.optionalKey(Schema.String),
  /** Parameters the app accepts besides these (the `extraMailParameters` setting), by upper-case name; `""` for a keyword alone. */
  extra: Schema.Record(Schema.String, Schema.String)
})
export type MailParams = typeof MailParams.Type

/** RCPT TO parameters (RFC 3461 DSN). */
export const RcptParams = Schema.Struct({
  notify: Schema.optionalKey(Schema.Array(Schema.Literals(["NEVER", "SUCCESS", "FAILURE", "DELAY"]))),
  orcpt: Schema.optionalKey(Schema.String),
  /** Parameters the app accepts besides these (the `extraRcptParameters` setting), by upper-case name; `""` for a keyword alone. */
  extra: Schema.Record(Schema.String, Schema.String)
})
export type RcptParams = typeof RcptParams.Type

/** The reverse-path of MAIL FROM. */
export interface MailFromAddress {
  /** `localPart@domain` (the domain lower-cased), or `""` for the null sender `<>`, as smtp-server gives it. */
  readonly address: string
  /** The address decoded: `None` for the null sender. */
  readonly mailbox: Option.Option<Mailbox>
  readonly params: MailParams
}

/** One forward-path of RCPT TO. */
export interface RcptToAddress {
  /** `localPart@domain`, the domain lower-cased. */
  readonly address: string
  readonly mailbox: Mailbox
  readonly params: RcptParams
}
