/**
 * Decodes the paths and parameters smtp-server hands over (a path and a bag of
 * upper-case parameters) into `SmtpAddress` values, or the rejection for what
 * does not decode.
 */
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type { SMTPServerAddress } from "smtp-server"
import * as Reject from "../phases/Reject.ts"
import { type MailFromAddress, MailParams, Mailbox, RcptParams, type RcptToAddress } from "../services/SmtpAddress.ts"

/** RFC 3463 tells a bad sender (X.1.7, X.1.8) from a bad recipient (X.1.3, X.1.2). */
const addressErrors = (mailbox: "5.1.7" | "5.1.3", system: "5.1.8" | "5.1.2") => ({
  syntax: Reject.badAddressSyntax(mailbox),
  localPartTooLong: Reject.addressTooLong(mailbox, "Local part", 64),
  domainTooLong: Reject.addressTooLong(system, "Domain", 255),
  pathTooLong: Reject.addressTooLong(mailbox, "Path", 256)
})
const senderErrors = addressErrors("5.1.7", "5.1.8")
const recipientErrors = addressErrors("5.1.3", "5.1.2")

const octets = (text: string) => Buffer.byteLength(text, "utf8")

/** Splits and checks a mailbox: RFC 5321 §4.5.3.1 sizes, and non-ASCII only with SMTPUTF8 (RFC 6531). */
const decodeMailbox = (
  raw: string,
  smtpUtf8: boolean,
  errors: typeof senderErrors
): Result.Result<Mailbox, Reject.SmtpRejection> => {
  const at = raw.lastIndexOf("@")
  if (at <= 0 || at === raw.length - 1) return Result.fail(errors.syntax)
  // smtp-server decodes the command line as UTF-8: invalid bytes became U+FFFD.
  if (raw.includes("\uFFFD")) return Result.fail(Reject.invalidUtf8)
  if (!smtpUtf8 && /[^\x00-\x7F]/.test(raw)) return Result.fail(Reject.nonAsciiWithoutSmtpUtf8)
  const localPart = raw.slice(0, at)
  const domain = raw.slice(at + 1)
  if (octets(raw) + 2 > 256) return Result.fail(errors.pathTooLong)
  if (octets(localPart) > 64) return Result.fail(errors.localPartTooLong)
  if (octets(domain) > 255) return Result.fail(errors.domainTooLong)
  return Result.succeed(new Mailbox({ raw, localPart, domain: domain.toLowerCase() }))
}

const decodeMailParams = Schema.decodeUnknownResult(MailParams)
const decodeRcptParams = Schema.decodeUnknownResult(RcptParams)

// Most commands carry no parameters: their decoded form is shared.
const noMailParams: MailParams = { smtpUtf8: false, requireTls: false, extra: {} }
const noRcptParams: RcptParams = { extra: {} }

const KNOWN_MAIL = new Set(["SIZE", "BODY", "SMTPUTF8", "REQUIRETLS", "RET", "ENVID"])
const KNOWN_RCPT = new Set(["NOTIFY", "ORCPT"])

const text = (value: string | true | undefined): string | undefined => typeof value === "string" ? value : undefined

/** The parameters outside `known` that the app accepts (`allowed`, upper case), or `undefined` if there is another. */
const extraOf = (args: Readonly<Record<string, string | true>>, known: ReadonlySet<string>, allowed: ReadonlySet<string>) => {
  const extra: Record<string, string> = {}
  for (const [key, value] of Object.entries(args)) {
    if (known.has(key)) continue
    if (!allowed.has(key)) return undefined
    extra[key] = value === true ? "" : value
  }
  return extra
}

const mailParams = (args: SMTPServerAddress["args"], allowed: ReadonlySet<string>): Result.Result<MailParams, Reject.SmtpRejection> => {
  if (args === false) return Result.succeed(noMailParams)
  const extra = extraOf(args, KNOWN_MAIL, allowed)
  if (extra === undefined) return Result.fail(Reject.badParameter)
  const size = text(args["SIZE"])
  const body = text(args["BODY"])
  return Result.mapError(
    decodeMailParams({
      ...(size !== undefined ? { size: /^\d{1,15}$/.test(size) ? Number(size) : Number.NaN } : {}),
      ...(body !== undefined ? { body: body.toUpperCase() } : {}),
      smtpUtf8: args["SMTPUTF8"] === true,
      requireTls: args["REQUIRETLS"] === true,
      ...(args["RET"] !== undefined ? { ret: String(args["RET"]).toUpperCase() } : {}),
      ...(args["ENVID"] !== undefined ? { envid: args["ENVID"] } : {}),
      extra
    }),
    () => Reject.badParameter
  )
}

const rcptParams = (args: SMTPServerAddress["args"], allowed: ReadonlySet<string>): Result.Result<RcptParams, Reject.SmtpRejection> => {
  if (args === false) return Result.succeed(noRcptParams)
  const extra = extraOf(args, KNOWN_RCPT, allowed)
  if (extra === undefined) return Result.fail(Reject.badParameter)
  const notify = text(args["NOTIFY"])
  return Result.mapError(
    decodeRcptParams({
      ...(notify !== undefined ? { notify: notify.toUpperCase().split(",") } : {}),
      ...(args["ORCPT"] !== undefined ? { orcpt: args["ORCPT"] } : {}),
      extra
    }),
    () => Reject.badParameter
  )
}

/** Decodes the path and parameters of a MAIL FROM command; `extra` names the other parameters the app accepts. */
export const decodeMailFrom = (
  address: SMTPServerAddress,
  extra: ReadonlySet<string>
): Result.Result<MailFromAddress, Reject.SmtpRejection> => {
  const params = mailParams(address.args, extra)
  if (Result.isFailure(params)) return Result.fail(params.failure)
  if (address.address === "") return Result.succeed({ address: "", mailbox: Option.none(), params: params.success })
  return Result.map(
    decodeMailbox(address.address, params.success.smtpUtf8, senderErrors),
    (mailbox) => ({ address: mailbox.address, mailbox: Option.some(mailbox), params: params.success })
  )
}

/** Decodes the path and parameters of a RCPT TO command; `smtpUtf8` is whether MAIL FROM asked for SMTPUTF8. */
export const decodeRcptTo = (
  address: SMTPServerAddress,
  smtpUtf8: boolean,
  extra: ReadonlySet<string>
): Result.Result<RcptToAddress, Reject.SmtpRejection> => {
  const params = rcptParams(address.args, extra)
  if (Result.isFailure(params)) return Result.fail(params.failure)
  return Result.map(
    decodeMailbox(address.address, smtpUtf8, recipientErrors),
    (mailbox) => ({ address: mailbox.address, mailbox, params: params.success })
  )
}
