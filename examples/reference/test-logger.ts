/**
 * Test support for the reference examples: the app's log lines, as `[sessionId] message`.
 *
 * Every phase's logs carry the connection's id as the `sessionId` annotation (the test kit's connections are
 * `test1`, `test2`…), so an example logs `Effect.log("Connected")` where Fumi logs `[${ctx.session.id}] Connected`,
 * and the line here reads as Fumi's would. The engine's own lines (a rejected command, an accepted or failed
 * AUTH) are left out: a test asserts what the example logs.
 */
import { Logger, References } from "effect"

const engineLines = new Set(["rejected", "authenticated", "authentication failed"])

/** A logger that records each line the app logs; provide `layer` to the test server. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ fiber, message }) => {
    const parts: ReadonlyArray<unknown> = Array.isArray(message) ? message : [message]
    if (typeof parts[0] === "string" && engineLines.has(parts[0])) return
    const { sessionId } = fiber.getRef(References.CurrentLogAnnotations)
    const text = parts.map((part) => typeof part === "string" ? part : JSON.stringify(part)).join(" ")
    lines.push(sessionId === undefined ? text : `[${String(sessionId)}] ${text}`)
  })
  return { lines, layer: Logger.layer([logger]) }
}
