/**
 * Benchmark baseline 1: raw smtp-server, no middleware.
 *
 *   node bench/baseline-raw.ts PORT        (PORT 0 = any free port)
 *
 * Listens on 127.0.0.1 only, accepts every envelope, drains DATA and accepts
 * the message, stores nothing. Prints exactly `listening <port>` on stdout once
 * it is bound, and closes and exits 0 on SIGTERM (or SIGINT).
 */
import { SMTPServer } from "smtp-server"

const HOST = "127.0.0.1"

const parsePort = (raw: string | undefined): number => {
  const port = raw === undefined ? Number.NaN : Number(raw)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write("usage: node bench/baseline-raw.ts PORT (0-65535, 0 = any free port)\n")
    process.exit(2)
  }
  return port
}

const port = parsePort(process.argv[2])
let listening = false

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ["STARTTLS", "AUTH"],
  logger: false,
  size: 200 * 1024 * 1024,
  // never resolve client addresses: no DNS traffic leaves the machine
  disableReverseLookup: true,
  closeTimeout: 2000,
  onData(stream, _session, callback) {
    stream.on("end", () => callback())
    stream.resume()
  }
})

server.on("error", (err) => {
  if (!listening) {
    process.stderr.write(`baseline-raw: ${err.message}\n`)
    process.exit(1)
  }
  // after startup these are client-side socket errors (resets): not fatal
})

server.listen(port, HOST, () => {
  listening = true
  const address = server.server.address()
  const bound = typeof address === "object" && address !== null ? address.port : port
  process.stdout.write(`listening ${bound}\n`)
})

const shutdown = (): void => {
  server.close(() => process.exit(0))
}
process.once("SIGTERM", shutdown)
process.once("SIGINT", shutdown)
