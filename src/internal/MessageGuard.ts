/**
 * Checks every byte of a DATA body on its way to the handler.
 *
 * Only CRLF ends a line in SMTP. A bare LF or bare CR inside a message is how
 * SMTP smuggling hides a second message or command from one server and shows
 * it to the next, so a message carrying one is never passed on unchanged:
 * with `reject` (the default) nothing more is passed on from the first one and
 * the message gets `550 5.5.2`; with `normalize` it becomes CRLF. NUL bytes
 * are rejected (or stripped), and a line longer than the limit is rejected.
 * The check keeps a couple of bytes of state, so memory stays bounded. It runs
 * on every byte, whether the handler reads the body or the adapter drains it.
 */
import * as Reject from "../phases/Reject.ts"

/** What to do with message content that breaks the rules. */
export interface Policy {
  readonly bareLineEndings: "reject" | "normalize"
  readonly nulBytes: "reject" | "strip"
  /** Longest line accepted, in bytes without its CRLF. */
  readonly maxLineLength: number
}

const CR = 0x0d
const LF = 0x0a
const NUL = 0x00
const EMPTY = Buffer.alloc(0)
/** A CR not followed by LF, or an LF not preceded by CR. */
const BARE_LINE_ENDING = /\r(?!\n)|(?<!\r)\n/


/**
 * Checks a body chunk by chunk, in order: `pass` returns the bytes to hand on
 * (the chunk itself unless something was rewritten), `finish` the bytes held
 * back at the end. Once `verdict` is set, nothing more is handed on.
 */
export class MessageGuard {
  verdict: Reject.SmtpRejection | undefined = undefined
  private readonly policy: Policy
  /** The last byte seen was a CR, and the next byte decides whether it was bare. */
  private pendingCR = false
  /** That CR has not been handed on yet (it was held back from a rewritten chunk). */
  private crWithheld = false
  private lineLength = 0

  constructor(policy: Policy) {
    this.policy = policy
  }

  pass(chunk: Buffer): Buffer {
    if (this.verdict !== undefined) return EMPTY
    if (this.clean(chunk)) return chunk
    const out = this.scan(chunk)
    return this.verdict === undefined ? out : EMPTY
  }

  finish(): Buffer {
    if (!this.pendingCR || this.verdict !== undefined) return EMPTY
    this.pendingCR = false
    if (this.violation(Reject.bareLineEnding)) return EMPTY
    return Buffer.from(this.crWithheld ? [CR, LF] : [LF])
  }

  /** Records a violation; false when the policy rewrites it instead. */
  private violation(rejection: Reject.SmtpRejection): boolean {
    if (this.policy.bareLineEndings === "normalize" && rejection === Reject.bareLineEnding) return false
    if (this.policy.nulBytes === "strip" && rejection === Reject.nulByte) return false
    this.verdict ??= rejection
    return true
  }

  /**
   * The common case, decided on the whole chunk with native code: no NUL, no
   * CR without LF or LF without CR (one regular expression), no line too long
   * (one search per half line limit). Updates the state only when it answers
   * true; otherwise `scan` decides byte by byte.
   */
  private clean(chunk: Buffer): boolean {
    const length = chunk.length
    if (length === 0) return true
    if (this.crWithheld || chunk.indexOf(NUL) !== -1) return false
    if (this.pendingCR !== (chunk[0] === LF)) return false
    // A CR at either edge pairs with an LF in the next or the previous chunk.
    const from = this.pendingCR ? 1 : 0
    const tailCR = chunk[length - 1] === CR
    const to = tailCR ? length - 1 : length
    if (from < to && BARE_LINE_ENDING.test(chunk.toString("latin1", from, to))) return false
    const limit = this.policy.maxLineLength
    const carried = this.pendingCR ? 0 : this.lineLength
    const firstLF = chunk.indexOf(LF, from)
    if (firstLF === -1) {
      if (carried + to - from > limit) return false
      this.pendingCR = tailCR
      this.lineLength = carried + to - from
      return true
    }
    const lastLF = chunk.lastIndexOf(LF)
    if (carried + firstLF - 1 - from > limit || to - lastLF - 1 > limit) return false
    // Between them: if every window of `step` bytes after a sample point holds an LF, no two LFs are more than
    // 2 * step apart, so no line is longer than the limit; a window without one sends the chunk to `scan`.
    const step = (limit + 2) >> 1
    for (let at = firstLF; at < lastLF; at += step) {
      const next = chunk.indexOf(LF, at + 1)
      if (next - at > step) return false
    }
    this.pendingCR = tailCR
    this.lineLength = to - lastLF - 1
    return true
  }

  /** Returns the bytes to pass on: `chunk` itself unless something had to be rewritten. */
  private scan(chunk: Buffer): Buffer {
    let rewritten: Array<number> | undefined
    const copyUpTo = (i: number): Array<number> => rewritten ??= Array.from(chunk.subarray(0, i))
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!
      if (byte === NUL) {
        // Stripped NULs are transparent: CR NUL LF is a line break.
        if (this.violation(Reject.nulByte)) return chunk
        copyUpTo(i)
        continue
      }
      if (this.pendingCR) {
        this.pendingCR = false
        this.lineLength = 0
        if (byte === LF) {
          if (this.crWithheld) copyUpTo(i).push(CR, LF)
          else rewritten?.push(LF)
          continue
        }
        if (this.violation(Reject.bareLineEnding)) return chunk
        if (this.crWithheld) copyUpTo(i).push(CR, LF)
        else copyUpTo(i).push(LF)
      }
      if (byte === CR) {
        this.pendingCR = true
        this.crWithheld = rewritten !== undefined
        continue
      }
      if (byte === LF) {
        if (this.violation(Reject.bareLineEnding)) return chunk
        copyUpTo(i).push(CR, LF)
        this.lineLength = 0
        continue
      }
      if (++this.lineLength > this.policy.maxLineLength) {
        this.verdict ??= Reject.messageLineTooLong(this.policy.maxLineLength)
        return chunk
      }
      rewritten?.push(byte)
    }
    return rewritten === undefined ? chunk : Buffer.from(rewritten)
  }
}
