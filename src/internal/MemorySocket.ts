/**
 * An in-memory connection: a pair of streams, one end handed to smtp-server in
 * place of a TCP socket, the other written and read by the test client.
 *
 * Bytes written at one end reach the other on the next tick, in order, as a
 * socket's would arrive on a later turn of the event loop. The server end has
 * what smtp-server's connection uses of a `net.Socket` besides the stream:
 * `readyState` and `setTimeout`. Its idle timer runs on Effect's `Clock`, so
 * under `TestClock` it is `TestClock.adjust` that makes smtp-server's own idle
 * timeout fire. Destroying one end destroys the other, as a reset would.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { Duplex } from "node:stream"
import type { StreamSocket } from "./engine/Hooks.ts"

/** One end of an in-memory connection. */
export class MemorySocket extends Duplex implements StreamSocket {
  private peer: MemorySocket | undefined = undefined
  private idleMillis = 0
  private timer: Fiber.Fiber<void> | undefined = undefined
  private readonly clock: Context.Context<never>

  /** `clock` holds the `Clock` the idle timer runs on. */
  constructor(clock: Context.Context<never>) {
    super({ allowHalfOpen: false })
    this.clock = clock
  }

  /** Two connected ends. */
  static pair(clock: Context.Context<never>): readonly [client: MemorySocket, server: MemorySocket] {
    const client = new MemorySocket(clock)
    const server = new MemorySocket(clock)
    client.peer = server
    server.peer = client
    return [client, server]
  }

  get readyState(): "open" | "readOnly" | "writeOnly" | "closed" {
    if (this.readable && this.writable) return "open"
    if (this.readable) return "readOnly"
    return this.writable ? "writeOnly" : "closed"
  }

  /** As `net.Socket.setTimeout`: `timeout` ms without traffic either way emits `timeout`; 0 turns it off. */
  setTimeout(timeout: number, callback?: () => void): this {
    if (callback !== undefined) {
      if (timeout === 0) this.off("timeout", callback)
      else this.once("timeout", callback)
    }
    this.idleMillis = timeout
    this.restartTimer()
    return this
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.restartTimer()
    this.deliver(chunk)
    callback()
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.deliver(null)
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.stopTimer()
    const peer = this.peer
    if (peer !== undefined) process.nextTick(() => peer.destroy())
    callback(error)
  }

  private deliver(chunk: Buffer | null): void {
    const peer = this.peer
    if (peer === undefined) return
    process.nextTick(() => {
      if (peer.destroyed || peer.readableEnded) return
      if (chunk !== null) peer.restartTimer()
      peer.push(chunk)
    })
  }

  private stopTimer(): void {
    const timer = this.timer
    this.timer = undefined
    timer?.interruptUnsafe()
  }

  private restartTimer(): void {
    this.stopTimer()
    if (this.idleMillis <= 0 || this.destroyed) return
    const timer: Fiber.Fiber<void> = Effect.runForkWith(this.clock)(
      Effect.sleep(Duration.millis(this.idleMillis)).pipe(
        Effect.andThen(Effect.sync(() => {
          if (this.timer === timer) this.emit("timeout")
        }))
      )
    )
    this.timer = timer
  }
}
