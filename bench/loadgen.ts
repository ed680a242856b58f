/**
 * A small SMTP load generator on raw `net` sockets, in the spirit of Postfix's
 * smtp-source. No PIPELINING: every command waits for its reply, and every
 * reply code is checked.
 *
 *   node bench/loadgen.ts --port N [--size 1k] [--messages 1000] [--parallel 10]
 *                         [--reuse] [--time 30] [--json]
 *
 *   --size      message size in bytes, before dot-stuffing; suffixes k, m (1024-based)
 *   --messages  total number of messages to attempt (every attempt counts, failed or not)
 *   --parallel  concurrent SMTP sessions
 *   --reuse     keep each connection for several messages (like `smtp-source -d`);
 *               without it every message gets its own connection and ends with QUIT
 *   --time      hard time limit in seconds: after it, in-flight sessions are cut off
 *   --json      print the result as one JSON line
 *
 * The host is fixed to 127.0.0.1; there is no option to change it.
 *
 * A session: connect, 220 greeting, EHLO (250), then per message MAIL FROM (250),
 * RCPT TO (250), DATA (354), the dot-stuffed CRLF body and `.` (250).
 * Bodies larger than SMALL_BODY are never held in memory whole: they are written
 * as a stream of 64 KB blocks, waiting for 'drain' whenever `socket.write` returns false.
 */
import net from "node:net"
import { parseArgs } from "node:util"

export const HOST = "127.0.0.1"

export interface LoadOptions {
  readonly port: number
  /** message size in bytes (headers + body, before dot-stuffing) */
  readonly messageSize: number
  /** total messages to attempt */
  readonly messages: number
  /** concurrent sessions */
  readonly parallel: number
  /** several messages per connection (true) or one connection per message (false) */
  readonly reuse: boolean
  /** hard limit: stop after this many seconds even if not done */
  readonly timeLimitSec: number
}

export interface LoadResult {
  readonly delivered: number
  /** failed attempts: unexpected reply codes, resets, refused connections */
  readonly errors: number
  /** messages cut off in flight by the time limit */
  readonly aborted: number
  readonly connections: number
  readonly elapsedSec: number
  readonly msgsPerSec: number
  /** message bytes (before stuffing) delivered per second, in MiB */
  readonly mibPerSec: number
  readonly timedOut: boolean
  readonly firstError: string | null
}

// ---------------------------------------------------------------------------
// Message bodies

const CRLF = "\r\n"
const HEADER =
  "From: <sender@example.test>\r\n" +
  "To: <rcpt@example.test>\r\n" +
  "Subject: effect-smtp benchmark\r\n" +
  "Message-ID: <bench@loadgen.localhost>\r\n" +
  "MIME-Version: 1.0\r\n" +
  "Content-Type: text/plain; charset=us-ascii\r\n" +
  "\r\n"
const LINE_CHARS = 78
const BLOCK_LINES = 819 // 819 * 80 bytes = 65,520 bytes per block
/** bodies up to this size are built once, whole, and sent with a single write */
const SMALL_BODY = 4 * 1024 * 1024

const ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

/** One line of body text; every 64th starts with a dot, so dot-stuffing is exercised. */
const bodyLine = (i: number): string => {
  let line = i % 64 === 0 ? "." : ALPHABET.charAt(i % ALPHABET.length)
  while (line.length < LINE_CHARS) line += ALPHABET.charAt((i + line.length) % ALPHABET.length)
  return line + CRLF
}

const RAW_BLOCK = Buffer.from(Array.from({ length: BLOCK_LINES }, (_, i) => bodyLine(i)).join(""), "latin1")

/** RFC 5321 4.5.2 transparency: a line starting with "." gets another "." (chunk must start at a line start). */
export const dotStuff = (raw: Buffer): Buffer => {
  let dots = 0
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x2e && (i === 0 || raw[i - 1] === 0x0a)) dots++
  }
  if (dots === 0) return raw
  const out = Buffer.allocUnsafe(raw.length + dots)
  let o = 0
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i] ?? 0
    if (byte === 0x2e && (i === 0 || raw[i - 1] === 0x0a)) out[o++] = 0x2e
    out[o++] = byte
  }
  return out
}

const WIRE_BLOCK = dotStuff(RAW_BLOCK)

/**
 * The wire form of a message of `size` bytes: dot-stuffed, CRLF line ends,
 * terminated by CRLF "." CRLF. Sizes are exact, except that sizes below the header
 * length (190 bytes) send the header only, and a 1-byte remainder that cannot be
 * merged into a previous line adds one byte.
 */
export class MessageBody {
  readonly size: number
  private readonly fullBlocks: number
  private readonly head: Buffer
  private readonly tail: Buffer
  private readonly terminator: Buffer
  private readonly whole: Buffer | undefined

  constructor(size: number) {
    this.size = size
    const head = Buffer.from(HEADER, "latin1")
    const rest = Math.max(0, size - head.length)
    this.fullBlocks = Math.floor(rest / RAW_BLOCK.length)
    const remainder = rest % RAW_BLOCK.length
    const lineBytes = LINE_CHARS + 2
    let wholeLines = Math.floor(remainder / lineBytes) * lineBytes
    let pad = remainder - wholeLines
    if (pad === 1 && wholeLines > 0) {
      wholeLines -= lineBytes
      pad += lineBytes
    }
    // a 1-byte remainder with nothing to borrow from becomes a bare CRLF (1 byte over)
    const padLine = pad >= 2 ? "y".repeat(pad - 2) + CRLF : pad === 1 ? CRLF : ""
    const rawTail = Buffer.concat([RAW_BLOCK.subarray(0, wholeLines), Buffer.from(padLine, "latin1")])
    this.head = dotStuff(head)
    this.tail = dotStuff(rawTail)
    this.terminator = Buffer.from(".\r\n", "latin1")
    this.whole = size <= SMALL_BODY ? Buffer.concat([...this.chunks()]) : undefined
  }

  /** Wire chunks, each at most 64 KB, lazily: the 64 KB block is one shared buffer. */
  *chunks(): Generator<Buffer> {
    if (this.whole !== undefined) {
      yield this.whole
      return
    }
    yield this.head
    for (let i = 0; i < this.fullBlocks; i++) yield WIRE_BLOCK
    if (this.tail.length > 0) yield this.tail
    yield this.terminator
  }
}

// ---------------------------------------------------------------------------
// One SMTP client connection

interface Reply {
  readonly code: number
  readonly text: string
}

export class SmtpReplyError extends Error {
  readonly code: number
  constructor(command: string, expected: number, reply: Reply) {
    super(`${command}: expected ${expected}, got ${reply.text}`)
    this.code = reply.code
  }
}

const MAX_REPLY_BUFFER = 64 * 1024

export class SmtpClient {
  readonly socket: net.Socket
  private buffered = ""
  private lines: Array<string> = []
  private readonly replies: Array<Reply> = []
  private waiter: { resolve: (reply: Reply) => void; reject: (err: Error) => void } | undefined
  private failure: Error | undefined

  /** Starts connecting to 127.0.0.1:port; the first reply() is the greeting. */
  constructor(port: number) {
    this.socket = net.createConnection({ host: HOST, port, noDelay: true })
    this.socket.setEncoding("latin1")
    this.socket.on("data", this.onData)
    this.socket.on("error", (err) => this.fail(err))
    this.socket.on("close", () => this.fail(new Error("connection closed")))
  }

  get closed(): boolean {
    return this.failure !== undefined
  }

  private readonly onData = (chunk: string): void => {
    this.buffered += chunk
    let eol = this.buffered.indexOf("\n")
    while (eol !== -1) {
      const line = this.buffered.slice(0, this.buffered.charCodeAt(eol - 1) === 13 ? eol - 1 : eol)
      this.buffered = this.buffered.slice(eol + 1)
      this.lines.push(line)
      if (line.charAt(3) !== "-") {
        const reply: Reply = { code: Number.parseInt(line.slice(0, 3), 10), text: this.lines.join(" | ") }
        this.lines = []
        const waiter = this.waiter
        if (waiter !== undefined) {
          this.waiter = undefined
          waiter.resolve(reply)
        } else {
          this.replies.push(reply)
        }
      }
      eol = this.buffered.indexOf("\n")
    }
    if (this.buffered.length > MAX_REPLY_BUFFER) this.destroy(new Error("reply line too long"))
  }

  private fail(err: Error): void {
    if (this.failure !== undefined) return
    this.failure = err
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.reject(err)
  }

  /** The next complete (possibly multi-line) reply. */
  reply(): Promise<Reply> {
    const queued = this.replies.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    if (this.failure !== undefined) return Promise.reject(this.failure)
    return new Promise<Reply>((resolve, reject) => {
      this.waiter = { resolve, reject }
    })
  }

  async expect(command: string, code: number): Promise<Reply> {
    const reply = await this.reply()
    if (reply.code !== code) throw new SmtpReplyError(command, code, reply)
    return reply
  }

  async command(line: string, code: number): Promise<Reply> {
    if (this.failure !== undefined) throw this.failure
    this.socket.write(line + CRLF)
    return this.expect(line.split(" ", 1)[0] ?? line, code)
  }

  /** Writes the chunks in order, waiting for 'drain' whenever the socket buffer is full. */
  async writeAll(chunks: Iterable<Buffer>): Promise<void> {
    for (const chunk of chunks) {
      if (this.failure !== undefined) throw this.failure
      if (!this.socket.write(chunk)) await this.drained()
    }
  }

  private drained(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        this.socket.off("drain", done)
        this.socket.off("close", done)
        if (this.failure !== undefined) reject(this.failure)
        else resolve()
      }
      this.socket.on("drain", done)
      this.socket.on("close", done)
    })
  }

  destroy(err?: Error): void {
    this.fail(err ?? new Error("connection destroyed"))
    this.socket.destroy()
  }
}

// ---------------------------------------------------------------------------
// The load loop

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const body = new MessageBody(options.messageSize)
  const active = new Set<SmtpClient>()
  let claimed = 0
  let delivered = 0
  let errors = 0
  let aborted = 0
  let connections = 0
  let stopped = false
  let timedOut = false
  let firstError: string | null = null

  const started = performance.now()
  const deadline = setTimeout(() => {
    stopped = true
    timedOut = true
    for (const client of active) client.destroy(new Error("time limit reached"))
  }, options.timeLimitSec * 1000)

  const claim = (): boolean => {
    if (stopped || claimed >= options.messages) return false
    claimed++
    return true
  }

  const open = async (): Promise<SmtpClient> => {
    const client = new SmtpClient(options.port)
    active.add(client)
    connections++
    await client.expect("greeting", 220)
    await client.command("EHLO loadgen.localhost", 250)
    return client
  }

  const close = (client: SmtpClient): void => {
    active.delete(client)
    client.destroy()
  }

  const session = async (): Promise<void> => {
    let client: SmtpClient | undefined
    while (claim()) {
      try {
        client ??= await open()
        await client.command("MAIL FROM:<sender@example.test>", 250)
        await client.command("RCPT TO:<rcpt@example.test>", 250)
        await client.command("DATA", 354)
        await client.writeAll(body.chunks())
        await client.expect("end of data", 250)
        delivered++
        if (!options.reuse) {
          await client.command("QUIT", 221).catch(() => undefined)
          close(client)
          client = undefined
        }
      } catch (err) {
        if (stopped) {
          aborted++
        } else {
          errors++
          firstError ??= err instanceof Error ? err.message : String(err)
        }
        if (client !== undefined) close(client)
        client = undefined
      }
    }
    if (client !== undefined) {
      if (!stopped) await client.command("QUIT", 221).catch(() => undefined)
      close(client)
    }
  }

  await Promise.all(Array.from({ length: Math.min(options.parallel, options.messages) }, session))
  clearTimeout(deadline)
  const elapsedSec = Math.min(performance.now() - started, options.timeLimitSec * 1000) / 1000
  return {
    delivered,
    errors,
    aborted,
    connections,
    elapsedSec,
    msgsPerSec: elapsedSec > 0 ? delivered / elapsedSec : 0,
    mibPerSec: elapsedSec > 0 ? (delivered * options.messageSize) / elapsedSec / (1024 * 1024) : 0,
    timedOut,
    firstError
  }
}

// ---------------------------------------------------------------------------
// CLI

/** "1024", "1k", "1KB", "100m": 1024-based. */
export const parseSize = (raw: string): number => {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i.exec(raw.trim())
  if (match === null) return Number.NaN
  const unit = (match[2] ?? "").toLowerCase()
  const scale = unit === "k" ? 1024 : unit === "m" ? 1024 ** 2 : unit === "g" ? 1024 ** 3 : 1
  return Math.round(Number(match[1]) * scale)
}

const usage = (problem: string): never => {
  process.stderr.write(
    `loadgen: ${problem}\n` +
      "usage: node bench/loadgen.ts --port N [--size 1k] [--messages 1000] [--parallel 10] [--reuse] [--time 30] [--json]\n"
  )
  process.exit(2)
}

const intOption = (name: string, raw: string, min: number, max: number): number => {
  const value = Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) usage(`--${name} must be an integer in ${min}..${max}`)
  return value
}

const parseArgsOrUsage = (argv: ReadonlyArray<string>) => {
  try {
    return parseArgs({
      args: [...argv],
      options: {
        port: { type: "string" },
        size: { type: "string", default: "1k" },
        messages: { type: "string", default: "1000" },
        parallel: { type: "string", default: "10" },
        reuse: { type: "boolean", short: "d", default: false },
        time: { type: "string", default: "30" },
        json: { type: "boolean", default: false }
      },
      strict: true,
      allowPositionals: false
    })
  } catch (err) {
    return usage(err instanceof Error ? err.message : String(err))
  }
}

export function parseCli(argv: ReadonlyArray<string>): LoadOptions & { readonly json: boolean } {
  const { values } = parseArgsOrUsage(argv)
  if (values.port === undefined) return usage("--port is required")
  const messageSize = parseSize(values.size)
  if (!Number.isInteger(messageSize) || messageSize < 1 || messageSize > 1024 ** 3) {
    usage("--size must be 1 byte .. 1 GiB")
  }
  const timeLimitSec = Number(values.time)
  if (!Number.isFinite(timeLimitSec) || timeLimitSec <= 0 || timeLimitSec > 600) usage("--time must be in (0, 600] seconds")
  return {
    port: intOption("port", values.port, 1, 65535),
    messageSize,
    messages: intOption("messages", values.messages, 1, 10_000_000),
    parallel: intOption("parallel", values.parallel, 1, 2000),
    reuse: values.reuse,
    timeLimitSec,
    json: values.json
  }
}

export const formatResult = (r: LoadResult): string =>
  `delivered ${r.delivered}, errors ${r.errors}, aborted ${r.aborted}, connections ${r.connections}, ` +
  `elapsed ${r.elapsedSec.toFixed(3)} s, ${r.msgsPerSec.toFixed(0)} msgs/s, ${r.mibPerSec.toFixed(1)} MiB/s` +
  (r.timedOut ? " (time limit reached)" : "") +
  (r.firstError !== null ? `\nfirst error: ${r.firstError}` : "")

if (import.meta.main) {
  const { json, ...options } = parseCli(process.argv.slice(2))
  const result = await runLoad(options)
  process.stdout.write(json ? JSON.stringify(result) + "\n" : formatResult(result) + "\n")
  process.exitCode = result.errors > 0 ? 1 : 0
}
