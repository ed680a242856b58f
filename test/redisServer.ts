/**
 * A throwaway real `redis-server` on a free 127.0.0.1 port, for tests of the
 * Redis-backed stores: outages (stop, then restart on the same port) can only
 * be tested against a real server. Promise-based and Effect-free so any vitest
 * hook can use it; needs the `redis-server` binary on PATH.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"

/** A running `redis-server`: `stop` and `restart` keep the same port. */
export interface RedisProcess {
  readonly port: number
  /** `redis://127.0.0.1:PORT` */
  readonly url: string
  /** SIGTERM, then waits for the exit; a no-op when already stopped. */
  stop(): Promise<void>
  /** Stops if running, starts again on the same port and waits until it answers PING. */
  restart(): Promise<void>
}

const host = "127.0.0.1"
const readyWithinMs = 5_000
const pingEveryMs = 50
const stopWithinMs = 5_000

/** Children still running, killed when this process exits. */
const live = new Set<ChildProcess>()
let exitHookInstalled = false
const installExitHook = () => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on("exit", () => {
    for (const child of live) child.kill("SIGKILL")
  })
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, host, () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : undefined
      server.close(() => (port === undefined ? reject(new Error("no port from listen(0)")) : resolve(port)))
    })
  })

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** One PING over a raw socket: true on `+PONG`, false on any failure within `timeoutMs`. */
const ping = (port: number, timeoutMs: number) =>
  new Promise<boolean>((resolve) => {
    let reply = ""
    const socket = net.createConnection({ host, port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1")
      if (reply.includes("+PONG")) done(true)
      else if (reply.includes("\r\n")) done(false)
    })
    socket.once("error", () => done(false))
    socket.once("close", () => done(false))
  })

const isEnoent = (error: unknown) => error instanceof Error && "code" in error && error.code === "ENOENT"

/** Spawns redis-server on `port` and resolves once it answers PING; rejects if it exits or errs first. */
const launch = async (port: number): Promise<ChildProcess> => {
  installExitHook()
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", host, "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
    { stdio: ["ignore", "pipe", "pipe"] }
  )
  live.add(child)
  let output = ""
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-4_000)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  let failure: Error | undefined
  child.once("error", (error) => {
    failure = isEnoent(error)
      ? new Error("redis-server not found on PATH: install it (`apt-get install redis-server`) to run the Redis tests", {
        cause: error
      })
      : error
  })
  child.once("exit", (code, signal) => {
    live.delete(child)
    failure ??= new Error(`redis-server on port ${port} exited (code ${code}, signal ${signal}) before answering PING:\n${output}`)
  })
  const deadline = Date.now() + readyWithinMs
  while (Date.now() < deadline) {
    if (failure !== undefined) throw failure
    if (await ping(port, Math.max(1, Math.min(500, deadline - Date.now())))) {
      if (failure !== undefined) throw failure
      return child
    }
    await sleep(pingEveryMs)
  }
  if (failure !== undefined) throw failure
  child.kill("SIGKILL")
  throw new Error(`redis-server on port ${port} did not answer PING within ${readyWithinMs} ms:\n${output}`)
}

/** SIGTERM (SIGKILL after `stopWithinMs`) and wait for the exit. */
const terminate = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const timer = setTimeout(() => child.kill("SIGKILL"), stopWithinMs)
    child.once("exit", () => {
      clearTimeout(timer)
      live.delete(child)
      resolve()
    })
    child.kill("SIGTERM")
  })

/**
 * Starts `redis-server` on a free loopback port, without persistence, and
 * waits until it answers PING. Retries on another port if the chosen one was
 * taken in the meantime.
 */
export const startRedis = async (): Promise<RedisProcess> => {
  let attempt = 0
  for (;;) {
    const port = await freePort()
    try {
      return handle(port, await launch(port))
    } catch (error) {
      attempt++
      if (isEnoent(error instanceof Error ? error.cause : undefined) || attempt >= 3) throw error
    }
  }
}

const handle = (port: number, first: ChildProcess): RedisProcess => {
  let child: ChildProcess | undefined = first
  let stopping: Promise<void> | undefined
  const stop = () => {
    const current = child
    if (current === undefined) return stopping ?? Promise.resolve()
    child = undefined
    stopping = terminate(current)
    return stopping
  }
  return {
    port,
    url: `redis://${host}:${port}`,
    stop,
    restart: async () => {
      await stop()
      child = await launch(port)
    }
  }
}
