/**
 * What the engine does with a command line before smtp-server sees it: a pure
 * function of the connection's facts and the line. It applies RFC 5321 line
 * lengths and parameters, RFC 2920 and RFC 3207 pipelining, RFC 4954 SASL
 * responses and AUTH outside transactions, the junk-command limit, BDAT and
 * required AUTH; smtp-server
 * applies the rest of the protocol to the lines it lets through.
 */
import * as Reject from "../../phases/Reject.ts"

/** What the policy needs to know about the connection. */
export interface Facts {
  /** The line answers an AUTH challenge (a SASL response), not a command. */
  readonly saslResponse: boolean
  readonly secure: boolean
  /** The session opened with HELO, which allows no pipelining at all. */
  readonly helo: boolean
  readonly authenticated: boolean
  /** smtp-server would take XCLIENT or XFORWARD from this client now (a trusted proxy, before any handover). */
  readonly mayProxy: (verb: "XCLIENT" | "XFORWARD") => boolean
  /** A mail transaction is open: MAIL FROM was accepted. */
  readonly inTransaction: boolean
  /** The server is shutting down. */
  readonly draining: boolean
  /** Commands counted as junk so far. */
  readonly junkCommands: number
  /** This line has already waited one turn for the TLS records read with it. */
  readonly waited: boolean
  /** Bytes the client sent after this line. */
  readonly ahead: () => number
}

/** The settings the policy applies. */
export interface Rules {
  readonly maxJunkCommands: number
  readonly rejectUnauthorizedPipelining: boolean
  readonly authRequired: boolean
}

/** What to do with the line. */
export type Verdict =
  /** Hand it to smtp-server; `junk` counts it as a command that does not send mail. */
  | { readonly _tag: "Pass"; readonly verb: string; readonly junk: boolean }
  /** Answer with the rejection and read on; `endsSasl` ends an AUTH exchange. */
  | { readonly _tag: "Reject"; readonly rejection: Reject.SmtpRejection; readonly junk: boolean; readonly endsSasl: boolean }
  /** Answer with the rejection and close the connection. */
  | { readonly _tag: "Refuse"; readonly rejection: Reject.SmtpRejection }
  /** Look at the line again on the next turn of the event loop. */
  | { readonly _tag: "WaitTurn" }

/** Commands that move a session forward; every other verb counts as junk. */
const COMMANDS = new Set(["HELO", "EHLO", "LHLO", "MAIL", "RCPT", "DATA", "QUIT", "STARTTLS", "AUTH"])

/** Commands that take part in a mail transaction. */
const TRANSACTION = new Set(["MAIL", "RCPT", "DATA"])

/** Commands whose reply a client must wait for before it sends more (RFC 2920 section 3.1, RFC 3207 section 4; XCLIENT's is a new greeting). */
const LAST_IN_GROUP = new Set(["EHLO", "HELO", "LHLO", "DATA", "STARTTLS", "XCLIENT"])

/** Base64 as RFC 4648 spells it, "=" for an empty response, or "*" to cancel. */
const SASL_TOKEN = /^(?:\*|=|(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4}))$/

/** An ESMTP parameter as RFC 5321 section 4.1.2 spells it (UTF-8 values allowed, RFC 6531). */
const ESMTP_PARAMETER = /^[A-Za-z0-9][A-Za-z0-9-]*(?:=[\x21-\x3c\x3e-\x7e\x80-\xff]+)?$/

/**
 * Longest command line per verb, CRLF included: RFC 5321 section 4.5.3.1.4, with room for the parameters of
 * SMTP extensions in MAIL and RCPT, and RFC 4954 section 4 for AUTH and its responses.
 */
const lineLimit = (verb: string): number => verb === "AUTH" ? 12288 : verb === "MAIL" || verb === "RCPT" ? 2048 : 512

/** Whether every parameter after the path of a MAIL or RCPT line is well formed. */
const wellFormedParameters = (line: Buffer): boolean => {
  const end = line.indexOf(">")
  // No path, or (the common case) the path ends the line.
  if (end === -1 || end === line.length - 1) return true
  const rest = line.toString("latin1", end + 1).trim()
  return rest === "" || rest.split(/\s+/).every((parameter) => ESMTP_PARAMETER.test(parameter))
}

const waitTurn: Verdict = { _tag: "WaitTurn" }
const passSasl: Verdict = { _tag: "Pass", verb: "", junk: false }
const refuse = (rejection: Reject.SmtpRejection): Verdict => ({ _tag: "Refuse", rejection })
const reject = (rejection: Reject.SmtpRejection, junk = false, endsSasl = false): Verdict =>
  ({ _tag: "Reject", rejection, junk, endsSasl })

/** The length of the verb at the start of `line` (up to the first space), or -1 if it is not all ASCII letters. */
const verbLength = (line: Buffer): number => {
  let at = 0
  for (; at < line.length; at++) {
    const byte = line[at]!
    if (byte === 0x20) break
    // ASCII letters only: smtp-server upper-cases the verb as UTF-8, where "ı" is "I" and "ſ" is "S", so a verb
    // of anything else would reach it as a command the checks below never saw.
    if (!((byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a))) return -1
  }
  return at === 0 ? -1 : at
}

/** Decides what happens to `line`, a command line without its line ending. */
export const decide = (rules: Rules, facts: Facts, line: Buffer): Verdict => {
  if (facts.draining) return refuse(Reject.shuttingDown)
  const junkLimitReached = facts.junkCommands + 1 > rules.maxJunkCommands
  if (facts.saslResponse) {
    // A SASL response: strict base64, "=" or nothing for an empty one, or "*" to cancel (RFC 4954 section 4).
    if (line.length + 2 > lineLimit("AUTH")) return reject(Reject.lineTooLong, false, true)
    const token = line.toString("latin1").trim()
    if (token !== "" && !SASL_TOKEN.test(token)) {
      return junkLimitReached ? refuse(Reject.tooMuchJunk) : reject(Reject.badBase64, true, true)
    }
    return passSasl
  }
  const length = verbLength(line)
  if (length === -1) return junkLimitReached ? refuse(Reject.tooMuchJunk) : reject(Reject.unrecognized, true)
  const verb = line.toString("latin1", 0, length).toUpperCase()
  // XCLIENT and XFORWARD move a session forward from a trusted proxy only: from anyone else they are junk.
  const known = COMMANDS.has(verb) || ((verb === "XCLIENT" || verb === "XFORWARD") && facts.mayProxy(verb))
  // Plaintext behind STARTTLS would be read inside the TLS session (RFC 3207 section 4), whatever the setting.
  const mustBeLast = verb === "STARTTLS" || (rules.rejectUnauthorizedPipelining && (LAST_IN_GROUP.has(verb) || facts.helo))
  if (mustBeLast) {
    // A TLS socket hands over one record at a time, so records read with this one are not queued yet: a turn
    // later they count as sent ahead.
    if (facts.secure && !facts.waited) return waitTurn
    if (facts.ahead() > 0) return refuse(Reject.outOfSync)
  }
  // CHUNKING is not offered: a BDAT payload would otherwise be read as commands.
  if (verb === "BDAT") return refuse(Reject.bdatRefused)
  // Every line that moves no session forward counts against the junk limit, refused or not.
  if (!known && junkLimitReached) return refuse(Reject.tooMuchJunk)
  if (line.length + 2 > lineLimit(verb)) return reject(Reject.lineTooLong, !known)
  if ((verb === "MAIL" || verb === "RCPT") && !wellFormedParameters(line)) return reject(Reject.badParameter)
  if (verb === "AUTH") {
    // RFC 4954 section 4 (smtp-server lets it through): a user accepted mid-transaction would miss its phases.
    if (facts.inTransaction) return reject(Reject.authInTransaction)
    const token = line.toString("latin1").trim().split(/\s+/)[2]
    if (token !== undefined && !SASL_TOKEN.test(token)) {
      return junkLimitReached ? refuse(Reject.tooMuchJunk) : reject(Reject.badBase64, true, true)
    }
  }
  if (rules.authRequired && TRANSACTION.has(verb) && !facts.authenticated) return reject(Reject.authenticationRequired)
  return { _tag: "Pass", verb, junk: !known }
}
