/**
 * AUTH PLAIN/LOGIN against a fixed list of users and passwords. A match
 * accepts, with the user name as the app's user (`Username`); anything else
 * goes on down the chain (and ends in `535 5.7.8`). Passwords are compared in
 * constant time.
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { createHash, timingSafeEqual } from "node:crypto"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { Credentials, Username } from "../services/PhaseInput.ts"

const digest = (text: string) => createHash("sha256").update(text, "utf8").digest()

export const staticUsers = (users: ReadonlyMap<string, Redacted.Redacted<string>>) => {
  const digests = new Map([...users].map(([name, password]) => [name, digest(Redacted.value(password))]))
  return SmtpApp.onAuth(Username, (next) =>
    Effect.gen(function*() {
      const { username, password } = yield* Credentials
      const expected = digests.get(username)
      if (expected !== undefined && timingSafeEqual(expected, digest(Redacted.value(password)))) return username
      return yield* next
    })
  )
}
