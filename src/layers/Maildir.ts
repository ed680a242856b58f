/**
 * A `MessageStore` that delivers to a Maildir (the format mutt and Dovecot read).
 *
 * Each message is written to `tmp/`, every byte of it, checked, synced, then
 * renamed into `new/` and the directory synced: a message is in `new/` whole
 * or not at all, and on disk before the 250 reply. The file is the message as
 * received (after dot-unstuffing) with the local line ending (LF, as Postfix
 * and Dovecot store mail; `lineEndings: "crlf"` keeps CRLF), preceded by the
 * trace fields of delivery: `Return-Path:` and `X-Original-To:` per
 * recipient (the `Received:` field is the `receivedHeader` plugin's). A full disk or quota fails the store with
 * `StorageError` `Full` (`452 4.3.1`), any other failure with `Io`
 * (`451 4.3.0`), and nothing is left behind. At start-up the three folders are
 * created if missing and checked to be directories on one file system, and
 * leftovers older than 36 hours are removed from `tmp/`.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as MaildirDelivery from "../internal/MaildirDelivery.ts"
import { MessageStore } from "../services/MessageStore.ts"

export { MaildirError } from "../internal/MaildirDelivery.ts"

/** Where and as whom to deliver. */
export interface Options {
  /** The Maildir root; `tmp`, `new` and `cur` are created if missing. */
  readonly root: string
  /** This server's name, for the file names. */
  readonly hostname: string
  /** Line endings of the stored files: `lf` (the default: what local mail readers expect) or `crlf` (as received). */
  readonly lineEndings?: MaildirDelivery.LineEndings
}

/** A Maildir message store. */
export const layer = (options: Options): Layer.Layer<MessageStore, MaildirDelivery.MaildirError> =>
  Layer.effect(
    MessageStore,
    Effect.as(
      MaildirDelivery.prepare(options.root),
      MaildirDelivery.store({ root: options.root, hostname: options.hostname, lineEndings: options.lineEndings ?? "lf" })
    )
  )
