/**
 * The rules the engine applies to a command line before smtp-server sees it
 * (RFC 5321 line lengths and parameters, RFC 2920 pipelining, RFC 4954 SASL
 * responses, which verbs are junk), and the replies the engine refuses with.
 */
import * as Reject from "../phases/Reject.ts"

/** Commands that move a session forward; every other verb counts as junk. */
export const COMMANDS = new Set(["HELO", "EHLO", "LHLO", "MAIL", "RCPT", "DATA", "QUIT", "STARTTLS", "AUTH"])

/** Base64 as RFC 4648 spells it, "=" for an empty response, or "*" to cancel. */
export const SASL_TOKEN = /^(?:\*|=|(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4}))$/

/** The initial response of `AUTH MECHANISM response`, if there is one. */
export const authArgument = (command: Buffer): string | undefined => command.toString("latin1").trim().split(/\s+/)[2]

export const badBase64 = Reject.permanent(501, "5.5.2", "Cannot decode the response: not base64")
export const authenticationRequired = Reject.permanent(530, "5.7.0", "Authentication required")
export const bdatRefused = Reject.permanent(502, "5.5.1", "BDAT is not supported, closing the connection")
export const tooMuchJunk = Reject.closing("4.7.0", "Too many commands that do not send mail")
export const commandTimedOut = Reject.closing("4.4.2", "Timeout receiving the command line, closing the connection")
export const dataTimedOut = Reject.closing("4.4.2", "Timeout receiving the message, closing the connection")
export const tooManyClients = Reject.closing("4.7.0", "Too many connections, try again later")
export const tooManyFromYou = Reject.closing("4.7.0", "Too many connections from your address, try again later")
export const outOfSync = Reject.permanent(554, "5.5.0", "Error: SMTP protocol synchronization, closing the connection")
export const lineTooLong = Reject.permanent(500, "5.5.2", "Line too long")
export const unrecognized = Reject.permanent(500, "5.5.2", "Error: command not recognized")
export const overlongInput = Reject.permanent(500, "5.5.2", "Line too long, closing the connection")
export const badParameter = Reject.permanent(555, "5.5.4", "Unsupported or malformed parameter")

/**
 * Longest command line per verb, CRLF included: RFC 5321 section 4.5.3.1.4, with room for the parameters of
 * SMTP extensions in MAIL and RCPT, and RFC 4954 section 4 for AUTH and its responses.
 */
export const lineLimit = (verb: string): number => verb === "AUTH" ? 12288 : verb === "MAIL" || verb === "RCPT" ? 2048 : 512

/** An ESMTP parameter as RFC 5321 section 4.1.2 spells it (UTF-8 values allowed, RFC 6531). */
const ESMTP_PARAMETER = /^[A-Za-z0-9][A-Za-z0-9-]*(?:=[\x21-\x3c\x3e-\x7e\x80-\xff]+)?$/

/** Whether every parameter after the path of a MAIL or RCPT line is well formed. */
export const wellFormedParameters = (command: Buffer): boolean => {
  const end = command.indexOf(">")
  if (end === -1) return true
  const rest = command.toString("latin1", end + 1).trim()
  return rest === "" || rest.split(/\s+/).every((parameter) => ESMTP_PARAMETER.test(parameter))
}

/** Commands that take part in a mail transaction. */
export const TRANSACTION = new Set(["MAIL", "RCPT", "DATA"])

/** Commands whose reply a client must wait for before it sends more (RFC 2920 section 3.1, RFC 3207 section 4). */
export const LAST_IN_GROUP = new Set(["EHLO", "HELO", "LHLO", "DATA", "STARTTLS"])
