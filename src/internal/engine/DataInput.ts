/**
 * The DATA input rules of smtp-server's reader (RFC 5321 section 4.5.2), as
 * pure functions over a chunk: where the message ends, which dots are escapes,
 * and which bytes must wait for the next chunk. The rules are upstream's,
 * position for position (test/data-reader.test.ts compares the two); only the
 * search is different: line-leading dots are found with `indexOf`.
 */
import type { Writable } from "node:stream"

const CR = 0x0d
const LF = 0x0a
const DOT = 0x2e
/** A line that starts with a dot: an escape, the end of the message, or (leniently) content. */
const LINE_DOT = Buffer.from("\n.")

/** The message is empty: its first line is the end ("." CRLF). */
export const endsAtOnce = (chunk: Buffer): boolean => chunk.length >= 3 && chunk[0] === DOT && chunk[1] === CR && chunk[2] === LF

/** The message's first line starts with an escape dot. */
export const escapedAtStart = (chunk: Buffer): boolean => chunk.length >= 2 && chunk[0] === DOT && chunk[1] === DOT

/** What a chunk holds. */
export interface Scanned {
  /** Message bytes to hand on, escape dots removed. */
  readonly content: Buffer | undefined
  /** When the message ends in this chunk: what follows CRLF "." CRLF (commands). */
  readonly rest: Buffer | undefined
  /** Otherwise: the last bytes (up to 4), kept for the next chunk, where the end sequence may continue. */
  readonly kept: Buffer
}

const join = (parts: ReadonlyArray<Buffer>): Buffer | undefined =>
  parts.length === 0 ? undefined : parts.length === 1 ? parts[0] : Buffer.concat(parts)

/**
 * Scans a chunk of DATA input (after any bytes kept from the last one). As
 * upstream, a dot is looked at only from the third byte of the chunk to the
 * third-last: the first two were the last chunk's, the last two are kept.
 */
export const scan = (chunk: Buffer): Scanned => {
  const length = chunk.length
  const parts: Array<Buffer> = []
  let start = 0
  for (let at = chunk.indexOf(LINE_DOT, 1); at !== -1; at = chunk.indexOf(LINE_DOT, at)) {
    const dot = at + 1
    if (dot >= length - 2) break
    if (chunk[dot - 2] === CR && chunk[dot + 1] === CR && chunk[dot + 2] === LF) {
      // The CRLF before the dot ends the message's last line: it is content.
      parts.push(chunk.subarray(start, dot))
      return { content: join(parts), rest: chunk.subarray(dot + 3), kept: chunk.subarray(length) }
    }
    if (chunk[dot + 1] === DOT) {
      parts.push(chunk.subarray(start, dot))
      start = dot + 1
      at = dot + 2
    } else {
      at = dot
    }
  }
  const tail = chunk.subarray(start)
  const kept = tail.length < 4 ? tail : tail.subarray(tail.length - 4)
  if (tail.length > kept.length) parts.push(tail.subarray(0, tail.length - kept.length))
  return { content: join(parts), rest: undefined, kept }
}

/** Runs `done` once `stream` drains, or closes: a stream the app destroys never drains. */
export const whenDrained = (stream: Writable, done: () => void): void => {
  const resume = () => {
    stream.off("drain", resume)
    stream.off("close", resume)
    done()
  }
  stream.once("drain", resume)
  stream.once("close", resume)
}
