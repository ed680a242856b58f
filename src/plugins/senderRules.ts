/**
 * Sender rules: `app.pipe(senderRules({ deny: ["spam.example"], allow: ["boss@spam.example"] }))`.
 *
 * MAIL FROM's address is matched against patterns, case-insensitively:
 * `user@example.com` (that address), `example.com` (addresses at that
 * domain) or `.example.com` (at its subdomains). The most specific pattern
 * that matches decides (an address before its domain, a domain before its
 * parents); an address no pattern matches is accepted when `allow` is empty
 * and refused when it is not. Refused senders get
 * `550 5.7.1 Sender address rejected: access denied`. The null sender `<>`
 * of bounces matches no pattern: `nullSender` decides it, and RFC 5321
 * (section 4.5.5) wants it accepted, the default.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Reject from "../phases/Reject.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { MailFrom } from "../services/PhaseInput.ts"

/** The patterns, and what to do with the null sender. */
export interface Options {
  readonly allow?: ReadonlyArray<string>
  readonly deny?: ReadonlyArray<string>
  /** `accept` (the default) or `reject` the null sender `<>`. */
  readonly nullSender?: "accept" | "reject"
}

// How specific the most specific of `patterns` that matches `address` is (higher is more), or -1.
const specificity = (patterns: ReadonlySet<string>, address: string): number => {
  if (patterns.has(address)) return Number.MAX_SAFE_INTEGER
  const domain = address.slice(address.lastIndexOf("@") + 1)
  if (patterns.has(domain)) return domain.length + 1
  for (let dot = domain.indexOf("."); dot !== -1; dot = domain.indexOf(".", dot + 1)) {
    if (patterns.has(domain.slice(dot))) return domain.length - dot
  }
  return -1
}

const patternSet = (patterns: ReadonlyArray<string> | undefined) =>
  new Set((patterns ?? []).map((pattern) => pattern.toLowerCase().replace(/^@/, "")))

/** Whether a sender address (`""` for the null sender) is accepted. */
export const admits = (options: Options): (address: string) => boolean => {
  const allow = patternSet(options.allow)
  const deny = patternSet(options.deny)
  const nullSender = (options.nullSender ?? "accept") === "accept"
  return (address) => {
    if (address === "") return nullSender
    const lower = address.toLowerCase()
    const allowed = specificity(allow, lower)
    const denied = specificity(deny, lower)
    if (denied === -1) return allowed !== -1 || allow.size === 0
    return allowed >= denied
  }
}

export const senderRules = (options: Options) => {
  const admitted = admits(options)
  return SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const { address, mailbox } = yield* MailFrom
      if (!admitted(Option.isNone(mailbox) ? "" : address)) return yield* Reject.senderDenied
      return yield* next
    })
  )
}
