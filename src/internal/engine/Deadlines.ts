/**
 * The deadlines the engine keeps on a connection besides each phase's own:
 * a command line must be complete within commandTimeout of its first byte, a
 * message must arrive within dataTimeout and at minDataRate, and a client must
 * read its replies within writeStallTimeout. All run on the engine's one
 * alarm, on the app's Clock; a trickle of bytes extends none of them.
 */
import * as Duration from "effect/Duration"
import type { SMTPServerDataStream } from "smtp-server"
import * as Reject from "../../phases/Reject.ts"
import type * as Alarm from "../Alarm.ts"
import type { Watched } from "./Connections.ts"

/** The settings the deadlines apply. */
export interface Timeouts {
  readonly commandTimeout: Duration.Duration
  readonly dataTimeout: Duration.Duration
  readonly idleTimeout: Duration.Duration
  readonly minDataRate: number
  readonly writeStallTimeout: Duration.Duration
}

export class Deadlines {
  private readonly alarm: Alarm.Alarm
  private readonly timeouts: Timeouts

  constructor(alarm: Alarm.Alarm, timeouts: Timeouts) {
    this.alarm = alarm
    this.timeouts = timeouts
  }

  /** A read ended inside a command line (`open`), or not: the line's deadline is armed at its first byte. */
  line(record: Watched, open: boolean): void {
    if (!open) {
      record.lineDeadline?.()
      record.lineDeadline = undefined
    } else {
      record.lineDeadline ??= this.alarm.after(this.timeouts.commandTimeout, () => record.connection.refuse(Reject.commandTimedOut))
    }
  }

  /**
   * Runs `onLate` once a message is late: past dataTimeout, or slower on
   * average than minDataRate after a grace of idleTimeout. Returns what
   * cancels it.
   */
  message(stream: SMTPServerDataStream, onLate: () => void): Alarm.Cancel {
    const alarm = this.alarm
    const start = alarm.now()
    const last = start + Duration.toMillis(this.timeouts.dataTimeout)
    const grace = start + Duration.toMillis(this.timeouts.idleTimeout)
    const rate = this.timeouts.minDataRate
    const due = () => Math.min(last, grace + (stream.byteLength * 1000) / rate)
    let cancel: Alarm.Cancel = () => undefined
    // At each expiry the bytes received so far may have moved the deadline on: then it is set again.
    const arm = (): void => {
      cancel = alarm.at(due(), () => alarm.now() >= due() ? onLate() : arm())
    }
    arm()
    return () => cancel()
  }

  /** smtp-server stops reading commands while replies wait for the client to read them: this bounds the wait. */
  replies<W extends Watched>(record: W, onStall: (record: W) => void): void {
    const socket = record.connection.socket
    if (record.stalled !== undefined || !socket.writableNeedDrain || socket.destroyed) return
    const stop = () => {
      record.stalled = undefined
      socket.off("drain", stop)
      socket.off("close", stop)
      cancelDeadline()
    }
    socket.once("drain", stop)
    socket.once("close", stop)
    const cancelDeadline = this.alarm.after(this.timeouts.writeStallTimeout, () => onStall(record))
    record.stalled = stop
  }
}
