/**
 * Benchmark baseline 1: raw smtp-server, no middleware.
 *
 *   node bench/baseline-raw.ts PORT        (PORT 0 = any free port)
 *
 * Listens on 127.0.0.1 only, accepts every envelope, drains DATA and accepts
 * the message, stores nothing. Prints exactly `listening <port>` on stdout once
 * it is bound, and closes and exits 0 on SIGTERM (or SIGINT).
 */
import { runBaseline } from "./baseline.ts"

runBaseline("baseline-raw", {
  onData(stream, _session, callback) {
    stream.on("end", () => callback())
    stream.resume()
  }
})
