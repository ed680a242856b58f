/**
 * Test support for the reference examples: the app's log lines, as `[sessionId] message`.
 *
 * Every phase's logs carry the connection's id as the `sessionId` annotation (the test kit's connections are
 * `test1`, `test2`…), so an example logs `Effect.log("Connected")` where Fumi logs `[${ctx.session.id}] Connected`,
 * and the line here reads as Fumi's would. The engine's and smtp-server's own lines (annotated with their
 * `component`) are left out: a test asserts what the example logs.
 */
import { Logger, References } from "effect"

/** A logger that records each line the app logs; provide `layer` to the test server. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ fiber, message }) => {
    const parts: ReadonlyArray<unknown> = Array.isArray(message) ? message : [message]
    const { sessionId, component } = fiber.getRef(References.CurrentLogAnnotations)
    if (component !== undefined) return
    const text = parts.map((part) => typeof part === "string" ? part : JSON.stringify(part)).join(" ")
    lines.push(sessionId === undefined ? text : `[${String(sessionId)}] ${text}`)
  })
  return { lines, layer: Logger.layer([logger]) }
}
