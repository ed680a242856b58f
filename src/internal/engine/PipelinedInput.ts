/**
 * Where the command being handled ends in the input smtp-server's parser was
 * written: what the pipelining rules need to count the bytes a client sent
 * after it (RFC 2920 section 3.1, RFC 3207 section 4).
 *
 * The parser splits each chunk it is written into lines and dispatches them
 * one after the other, keeping a partial line for the next chunk. This follows
 * the same chunk, line by line, without copying or parsing anything again.
 */
const CR = 0x0d
const EMPTY = Buffer.alloc(0)

export class PipelinedInput {
  /** The chunk being dispatched, after the parser's carried-over partial line. */
  #chunk: Buffer = EMPTY
  #carried = 0
  /** Where the next line starts, counting the carried-over bytes first. */
  #position = 0

  /** A chunk arrives in command mode, after `carried` bytes the parser kept from the last one. */
  written(chunk: Buffer, carried: number): void {
    this.#chunk = chunk
    this.#carried = carried
    this.#position = 0
  }

  /** Moves past `line` and its line ending: called for each line as it is dispatched. */
  dispatched(line: Buffer): void {
    const end = this.#position + line.length
    // A carried-over partial line holds no LF, so a line ending that starts in it is CRLF.
    this.#position = end + (end < this.#carried || this.#chunk[end - this.#carried] === CR ? 2 : 1)
  }

  /** Bytes of the current chunk after the line being handled. */
  get rest(): number {
    return Math.max(0, this.#carried + this.#chunk.length - this.#position)
  }
}
