/**
 * What telemetry reads off a phase, a command, a reply and a session: the
 * names operators see (`mail_from`), the reply as the client read it, the
 * address a MAIL or RCPT names, the session's TLS, user and HELO name.
 */
import type { SMTPServerSession } from "smtp-server"
import type { PhaseName } from "../../layers/SmtpMetrics.ts"
import type { Phase } from "../../phases/SmtpApp.ts"

/** The phases as metrics, spans and log lines name them. */
export const phaseNames: Readonly<Record<Phase, PhaseName>> = {
  connect: "connect",
  secure: "secure",
  auth: "auth",
  mailFrom: "mail_from",
  rcptTo: "rcpt_to",
  data: "data",
  close: "close"
}

/** The phase a command belongs to, when no phase run says; "" (no command, or not one of SMTP's) is `command`. */
export const phaseOfVerb = (verb: string): PhaseName => {
  switch (verb) {
    case "MAIL":
      return "mail_from"
    case "RCPT":
      return "rcpt_to"
    case "DATA":
    case "BDAT":
      return "data"
    case "AUTH":
      return "auth"
    case "STARTTLS":
      return "secure"
    case "XCLIENT":
      return "connect"
    default:
      return "command"
  }
}

/** SMTP's commands: a line's verb is one of them, or none. */
export const VERBS: ReadonlySet<string> = new Set([
  "HELO", "EHLO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP", "AUTH", "STARTTLS", "XCLIENT", "XFORWARD"
])

/** `verb` if it is one of SMTP's; otherwise "" (what a client sent is not repeated). */
export const known = (verb: string): string => VERBS.has(verb) ? verb : ""

/** The verb of a command line, if it is one of SMTP's; otherwise "". */
export const verbOf = (line: Buffer): string => {
  const end = line.indexOf(0x20)
  return known(line.toString("latin1", 0, end === -1 ? Math.min(line.length, 9) : Math.min(end, 9)).toUpperCase())
}

/** The enhanced code a reply's own text starts with. */
export const ENHANCED = /^([245]\.\d{1,3}\.\d{1,3}) /

/** A reply as the client read it (without the last CRLF): a multi-line one's lines joined with CRLF. */
export const replyLine = (code: number, enhanced: string, text: string | ReadonlyArray<string>): string => {
  const lines = typeof text === "string" ? [text] : text
  const prefix = enhanced === "" ? "" : `${enhanced} `
  return lines.map((line, i) => `${code}${i < lines.length - 1 ? "-" : " "}${prefix}${line}`).join("\r\n").trimEnd()
}

/** The address in a MAIL or RCPT command line, `<>` being "". */
export const addressIn = (command: string): string | undefined => /<([^>]*)>/.exec(command)?.[1]

/** The TLS protocol of the session, or "none". */
export const tlsOf = (session: SMTPServerSession): string => session.tlsOptions ? session.tlsOptions.version ?? "TLS" : "none"
/** The name the session logged in with. */
export const userOf = (session: SMTPServerSession): string | undefined => typeof session.user === "string" ? session.user : undefined
/** The name the client gave with HELO or EHLO. */
export const heloOf = (session: SMTPServerSession): string | undefined => session.hostNameAppearsAs || undefined
