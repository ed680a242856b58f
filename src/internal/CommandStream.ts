/**
 * smtp-server's command parser, taught to say how many bytes the client sent
 * after the command being handled: what the pipelining rules need (RFC 2920
 * section 3.1, RFC 3207 section 4).
 *
 * smtp-server's parser splits each chunk it is written into lines and
 * dispatches them one after the other, keeping the rest of the chunk to
 * itself. `CommandStream` follows the same chunk and learns where each
 * dispatched line ends, so it can count what follows it without copying or
 * parsing anything a second time. It also says, as input arrives, whether a
 * command line is left open: what the command-line deadline needs.
 */
import { SMTPStream, type SMTPStreamOptions } from "smtp-server/lib/smtp-stream.js"

const CR = 0x0d
const LF = 0x0a
const EMPTY = Buffer.alloc(0)

type Callback = (error?: Error | null) => void

export class CommandStream extends SMTPStream {
  /** The command input being dispatched: the parser's carried-over partial line, then this chunk. */
  #chunk: Buffer = EMPTY
  #carried = 0
  /** Where the next line starts, counting the carried-over bytes first. */
  #position = 0
  /** The length of the write being processed; the parser's own re-entries handle parts of it. */
  #writing: number | undefined = undefined
  readonly #lineOpen: (open: boolean) => void

  /** `lineOpen` hears after each read whether it ended inside a command line. */
  constructor(options: SMTPStreamOptions, lineOpen: (open: boolean) => void) {
    super(options)
    this.#lineOpen = lineOpen
  }

  override _write(chunk: Buffer, encoding: BufferEncoding | "buffer", next: Callback): void {
    let done = next
    if (this.#writing === undefined) {
      this.#writing = chunk.length
      done = (error) => {
        this.#writing = undefined
        next(error)
      }
    }
    if (!this._dataMode) {
      this.#carried = this._remainder.length
      this.#chunk = chunk
      this.#position = 0
    }
    // A closed parser (its connection gone, or retired by STARTTLS) only drains what it holds.
    if (!this.isClosed) this.#lineOpen(!this._dataMode && chunk.length > 0 && chunk[chunk.length - 1] !== LF)
    super._write(chunk, encoding, done)
  }

  /** Moves past `line` and its line ending: called for each line as it is dispatched. */
  dispatched(line: Buffer): void {
    const end = this.#position + line.length
    // A carried-over partial line holds no LF, so a line ending that starts in it is CRLF.
    this.#position = end + (end < this.#carried || this.#chunk[end - this.#carried] === CR ? 2 : 1)
  }

  /** Bytes received after the line being handled: the rest of its chunk and the writes queued behind it. */
  get ahead(): number {
    const rest = Math.max(0, this.#carried + this.#chunk.length - this.#position)
    return rest + this.writableLength - (this.#writing ?? 0)
  }
}
