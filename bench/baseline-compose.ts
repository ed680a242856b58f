/**
 * Benchmark baseline 2: smtp-server with a Fumi-style, Koa-compose-style
 * promise middleware layer.
 *
 *   node bench/baseline-compose.ts PORT    (PORT 0 = any free port)
 *
 * Each of onConnect, onMailFrom, onRcptTo and onData runs a composed chain of
 * three pass-through async middleware `async (ctx, next) => { ...; await next() }`
 * followed by a terminal: a no-op for the envelope phases, and for DATA one
 * that drains the stream and resolves on 'end'. One middleware reads the
 * per-session state from a Map keyed by session id (removed in onClose), one
 * adds a field to a log context, one is a timing wrapper around next().
 *
 * Same interface as baseline-raw.ts: 127.0.0.1 only, prints `listening <port>`
 * when bound, closes and exits 0 on SIGTERM (or SIGINT).
 */
import { runBaseline } from "./baseline.ts"
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from "smtp-server"


// ---------------------------------------------------------------------------
// compose: an onion of `(ctx, next) => Promise<void>` functions, as koa-compose
// builds it. Each middleware receives a `next` that runs the rest of the chain
// and settles when the rest has settled. Calling next() twice is an error.

type Next = () => Promise<void>
type Middleware<C> = (ctx: C, next: Next) => Promise<void>

function compose<C>(stack: ReadonlyArray<Middleware<C>>): (ctx: C) => Promise<void> {
  const done: Next = () => Promise.resolve()
  return (ctx) => {
    let last = -1
    const dispatch = (index: number): Promise<void> => {
      if (index <= last) return Promise.reject(new Error("next() called more than once"))
      last = index
      const fn = stack[index]
      if (fn === undefined) return done()
      try {
        return fn(ctx, () => dispatch(index + 1))
      } catch (err) {
        return Promise.reject(err)
      }
    }
    return dispatch(0)
  }
}

// ---------------------------------------------------------------------------
// Context and per-session state

interface SessionState {
  readonly connectedAt: number
  commands: number
}

interface BaseCtx {
  readonly phase: "connect" | "mail" | "rcpt" | "data"
  readonly session: SMTPServerSession
  readonly log: Record<string, string | number>
  state: SessionState | undefined
}
interface AddressCtx extends BaseCtx {
  readonly address: SMTPServerAddress
}
interface DataCtx extends BaseCtx {
  readonly stream: SMTPServerDataStream
}

const sessions = new Map<string, SessionState>()

// 1. reads the per-session state
const withSessionState: Middleware<BaseCtx> = async (ctx, next) => {
  const state = sessions.get(ctx.session.id)
  if (state !== undefined) state.commands++
  ctx.state = state
  await next()
}

// 2. adds a log-context field
const withLogContext: Middleware<BaseCtx> = async (ctx, next) => {
  ctx.log["session"] = ctx.session.id
  ctx.log["phase"] = ctx.phase
  await next()
}

// 3. times the rest of the chain (the measurement is not reported anywhere)
const withTiming: Middleware<BaseCtx> = async (ctx, next) => {
  const started = performance.now()
  await next()
  ctx.log["ms"] = performance.now() - started
}

const accept: Middleware<BaseCtx> = async () => {}

const drain: Middleware<DataCtx> = (ctx) =>
  new Promise<void>((resolve, reject) => {
    ctx.stream.once("error", reject)
    ctx.stream.once("end", () => resolve())
    ctx.stream.resume()
  })

const connectChain = compose<BaseCtx>([withSessionState, withLogContext, withTiming, accept])
const addressChain = compose<AddressCtx>([withSessionState, withLogContext, withTiming, accept])
const dataChain = compose<DataCtx>([withSessionState, withLogContext, withTiming, drain])

const settle = (run: Promise<void>, callback: (err?: Error | null) => void): void => {
  run.then(
    () => callback(),
    (err: unknown) => callback(err instanceof Error ? err : new Error(String(err)))
  )
}

// ---------------------------------------------------------------------------
// Server

runBaseline("baseline-compose", {
  onConnect(session, callback) {
    sessions.set(session.id, { connectedAt: Date.now(), commands: 0 })
    settle(connectChain({ phase: "connect", session, log: {}, state: undefined }), callback)
  },
  onMailFrom(address, session, callback) {
    settle(addressChain({ phase: "mail", session, address, log: {}, state: undefined }), callback)
  },
  onRcptTo(address, session, callback) {
    settle(addressChain({ phase: "rcpt", session, address, log: {}, state: undefined }), callback)
  },
  onData(stream, session, callback) {
    settle(dataChain({ phase: "data", session, stream, log: {}, state: undefined }), callback)
  },
  onClose(session) {
    sessions.delete(session.id)
  }
})
