/**
 * A session's transcript, with the `transcript` setting: the commands the
 * client sent and the replies as it read them, up to a session's first
 * 1,000 lines. Credentials never reach it: a SASL response, the payload of
 * an AUTH command, and a line of no SMTP command after an AUTH (a response
 * sent ahead of its 334, or after the AUTH was refused) read `SECURED`.
 * Message contents are not commands: DATA's lines never reach it either.
 */
import type { TranscriptLine } from "../../services/SmtpSession.ts"
import { replyLine, VERBS } from "./Facts.ts"

/** What the transcript shows in place of credentials. */
const SECURED = "/* secured */"

/** A session keeps its first lines only, so a long one costs no more. */
const LINES = 1000

export interface Transcript {
  readonly lines: Array<TranscriptLine>
  /** An AUTH is under way: a line of no command is a credential. */
  afterAuth: boolean
}

export const make = (): Transcript => ({ lines: [], afterAuth: false })

/** A command line; `sasl`, a response within an AUTH exchange. */
export const client = (transcript: Transcript, line: Buffer, sasl: boolean): void => {
  if (transcript.lines.length >= LINES) return
  if (sasl) return void transcript.lines.push({ from: "client", line: SECURED })
  const text = line.toString()
  const words = text.trim().split(/\s+/)
  const verb = (words[0] ?? "").toUpperCase()
  let shown = text
  if (verb === "AUTH") {
    transcript.afterAuth = true
    if (words.length > 2) shown = `${words[0]} ${words[1]} ${SECURED}`
  } else if (VERBS.has(verb)) {
    transcript.afterAuth = false
  } else if (transcript.afterAuth) {
    shown = SECURED
  }
  transcript.lines.push({ from: "client", line: shown })
}

/** A reply: its code, the enhanced code smtp-server put after it ("" for none) and its text. */
export const server = (transcript: Transcript, code: number, enhanced: string, text: string | ReadonlyArray<string>): void => {
  if (transcript.lines.length < LINES) transcript.lines.push({ from: "server", line: replyLine(code, enhanced, text) })
}
