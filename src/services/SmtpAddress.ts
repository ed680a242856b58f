/**
 * Envelope addresses and their ESMTP parameters, decoded with Schema.
 *
 * smtp-server hands over the path and a bag of upper-case parameters. They are
 * decoded once, before any handler runs: the address keeps the raw string the
 * client sent, and the parameters become typed fields (SIZE as a number, BODY,
 * SMTPUTF8, REQUIRETLS, DSN RET/ENVID, RCPT NOTIFY/ORCPT). Anything that does
 * not decode is rejected with the RFC 5321 / RFC 3463 reply for it.
 */
import { Effect, Option, Schema } from "effect"
import type { SMTPServerAddress } from "smtp-server"
import * as Reject from "../phases/Reject.ts"

/** A mailbox as the client wrote it, split at its last `@`. */
export class Mailbox extends Schema.Class<Mailbox>("Mailbox")({
  /** Exactly what stood between `<` and `>`. */
  raw: Schema.String,
  localPart: Schema.String,
  /** The domain, lower-cased (domains are case-insensitive, local parts are not). */
  domain: Schema.String
}) {
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
  envid: Schema.optionalKey(Schema.String)
})
export type MailParams = typeof MailParams.Type

/** RCPT TO parameters (RFC 3461 DSN). */
export const RcptParams = Schema.Struct({
  notify: Schema.optionalKey(Schema.Array(Schema.Literals(["NEVER", "SUCCESS", "FAILURE", "DELAY"]))),
  orcpt: Schema.optionalKey(Schema.String)
})
export type RcptParams = typeof RcptParams.Type

/** The reverse-path of MAIL FROM: `None` for the null sender `<>`. */
export interface MailFromAddress {
  readonly mailbox: Option.Option<Mailbox>
  readonly params: MailParams
}

/** One forward-path of RCPT TO. */
export interface RcptToAddress {
  readonly mailbox: Mailbox
  readonly params: RcptParams
}

const badAddress = Reject.permanent(553, "5.1.3", "Mailbox name syntax is invalid")
const badParameter = Reject.permanent(555, "5.5.4", "Unsupported or malformed parameter")

const decodeMailbox = (raw: string): Effect.Effect<Mailbox, Reject.SmtpRejection> => {
  const at = raw.lastIndexOf("@")
  if (at <= 0 || at === raw.length - 1) return Effect.fail(badAddress)
  return Effect.succeed(new Mailbox({ raw, localPart: raw.slice(0, at), domain: raw.slice(at + 1).toLowerCase() }))
}

const decodeMailParamsEffect = Schema.decodeUnknownEffect(MailParams)
const decodeRcptParamsEffect = Schema.decodeUnknownEffect(RcptParams)

const KNOWN_MAIL = new Set(["SIZE", "BODY", "SMTPUTF8", "REQUIRETLS", "RET", "ENVID"])
const KNOWN_RCPT = new Set(["NOTIFY", "ORCPT"])

const unknownParameter = (args: SMTPServerAddress["args"], known: ReadonlySet<string>): boolean =>
  args !== false && Object.keys(args).some((key) => !known.has(key))

const text = (value: string | true | undefined): string | undefined => typeof value === "string" ? value : undefined

/** Decodes the path and parameters of a MAIL FROM command. */
export const decodeMailFrom = (address: SMTPServerAddress): Effect.Effect<MailFromAddress, Reject.SmtpRejection> => {
  const args = address.args || {}
  if (unknownParameter(address.args, KNOWN_MAIL)) return Effect.fail(badParameter)
  const size = text(args["SIZE"])
  const body = text(args["BODY"])
  const params = decodeMailParamsEffect({
    ...(size !== undefined ? { size: /^\d{1,15}$/.test(size) ? Number(size) : Number.NaN } : {}),
    ...(body !== undefined ? { body: body.toUpperCase() } : {}),
    smtpUtf8: args["SMTPUTF8"] === true,
    requireTls: args["REQUIRETLS"] === true,
    ...(args["RET"] !== undefined ? { ret: String(args["RET"]).toUpperCase() } : {}),
    ...(args["ENVID"] !== undefined ? { envid: args["ENVID"] } : {})
  }).pipe(Effect.mapError(() => badParameter))
  const mailbox = address.address === ""
    ? Effect.succeed(Option.none<Mailbox>())
    : Effect.map(decodeMailbox(address.address), Option.some)
  return Effect.map(Effect.all([mailbox, params]), ([mailbox, params]) => ({ mailbox, params }))
}

/** Decodes the path and parameters of a RCPT TO command. */
export const decodeRcptTo = (address: SMTPServerAddress): Effect.Effect<RcptToAddress, Reject.SmtpRejection> => {
  const args = address.args || {}
  if (unknownParameter(address.args, KNOWN_RCPT)) return Effect.fail(badParameter)
  const notify = text(args["NOTIFY"])
  const params = decodeRcptParamsEffect({
    ...(notify !== undefined ? { notify: notify.toUpperCase().split(",") } : {}),
    ...(args["ORCPT"] !== undefined ? { orcpt: args["ORCPT"] } : {})
  }).pipe(Effect.mapError(() => badParameter))
  return Effect.map(Effect.all([decodeMailbox(address.address), params]), ([mailbox, params]) => ({ mailbox, params }))
}

/** The sender as text: the mailbox, or "" for the null sender. */
export const reversePath = (sender: MailFromAddress): string =>
  Option.match(sender.mailbox, { onNone: () => "", onSome: (mailbox) => mailbox.address })
