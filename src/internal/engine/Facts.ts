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

/** The phase a command belongs to, when no phase run says. */
export const phaseOfVerb = (verb: string, command: string): PhaseName => {
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
    // No verb: before the first command (the greeting), or a response within an AUTH exchange.
    case "":
      return command === "" ? "connect" : "auth"
    default:
      return "command"
  }
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
