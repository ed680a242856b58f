/**
 * AUTH PLAIN and LOGIN against the app's `Users` store:
 * `app.pipe(authUsers)`, with `Users.layerMemory(…)` or `Users.layerFile(path)`
 * provided to the server.
 *
 * A user name and password the store knows accepts, with the user name as the
 * app's user (`Username`); anything else goes on down the chain (and ends in
 * `535 5.7.8 Authentication credentials invalid`). A store that cannot be
 * read answers `454 4.7.0 Temporary authentication failure` (RFC 4954).
 */
import * as Effect from "effect/Effect"
import * as Reject from "../phases/Reject.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { Credentials, Username } from "../services/PhaseInput.ts"
import { Users } from "../services/Users.ts"

export const authUsers = SmtpApp.onAuth(Username, (next) =>
  Effect.gen(function*() {
    const { username, password } = yield* Credentials
    const users = yield* Users
    const valid = yield* users.verify(username, password).pipe(
      Effect.catchTag("UsersError", (error) =>
        Effect.logError("user store failed").pipe(
          Effect.annotateLogs({ error: error.message }),
          Effect.andThen(Effect.fail(Reject.authUnavailable))
        ))
    )
    if (valid) return username
    return yield* next
  })
)
