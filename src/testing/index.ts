/**
 * effect-smtp/testing: test an SMTP app without a port.
 *
 * `SmtpTest.layer(app)` runs the app in memory through the same engine as
 * `SmtpServer.layer`; `SmtpTest.connect()` returns a client whose commands
 * answer with parsed replies. The README's "Testing your server" shows it at work.
 */
export { type ConnectOptions, SmtpTest } from "./SmtpTest.ts"
export { type Mail, type Params, type Reply, type SmtpTestClient, SmtpTestError } from "./SmtpTestClient.ts"
