/**
 * What the two smtp-server baselines share: the same options as the
 * effect-smtp benchmark server (127.0.0.1 only, no TLS or AUTH, no reverse DNS,
 * 200 MB size limit), `listening <port>` on stdout once bound, and a clean
 * exit 0 on SIGTERM or SIGINT.
 */
import { SMTPServer, type SMTPServerOptions } from "smtp-server"

const HOST = "127.0.0.1"

/** Runs smtp-server with `handlers` on the port given as the first argument. */
export const runBaseline = (name: string, handlers: SMTPServerOptions): void => {
  const raw = process.argv[2]
  const port = raw === undefined ? Number.NaN : Number(raw)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`usage: node bench/${name}.ts PORT (0-65535, 0 = any free port)\n`)
    process.exit(2)
  }
  let listening = false
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    size: 200 * 1024 * 1024,
    // never resolve client addresses: no DNS traffic leaves the machine
    disableReverseLookup: true,
    closeTimeout: 2000,
    ...handlers
  })
  server.on("error", (err) => {
    if (!listening) {
      process.stderr.write(`${name}: ${err.message}\n`)
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
  const shutdown = (): void => server.close(() => process.exit(0))
  process.once("SIGTERM", shutdown)
  process.once("SIGINT", shutdown)
}
