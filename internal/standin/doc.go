// Package standin is one Go program that behaves as any AgentKeys service
// the broker host runs, for tests: it is invoked as the cargo package (first
// argument, or argv[0]'s base name) and enforces that binary's runtime
// contract as read from its sources (package contract and the Refs cited at
// each check): the same clap flags and usage errors (exit 2), the same
// startup validation with the same exit codes, the same bind address, the
// same health bodies and the same per-request failures where the real
// binary defers a check to request time.
//
// What it cannot do is what needs the outside world: AWS (S3, SES, STS),
// secp256k1 signing and the broker's grant flows. Those routes answer 501
// {"error":"standin_unimplemented"} once every check the real binary runs
// before them has passed, so a test never mistakes a stand-in for storage.
//
// Test hooks (the real binaries have none of these):
//
//	--standin-features a,b  right after the package name: the cargo features
//	                        the binary was "built" with (the generated
//	                        workspace's shims pass cfg!(feature) here).
//	                        Without it: the package's default features plus
//	                        the ones the deployment builds with
//	                        (contract.Service.Features).
//	AGENTKEYS_STANDIN_SES=ok|fail  the broker's SES sender-verify probe
//	                        (BROKER_EMAIL_SENDER=ses); unset = fail, since a
//	                        test host has no SES.
//	AGENTKEYS_STANDIN_MAX_UPTIME   the broker's 24 h serve limit, as a Go
//	                        duration.
//
// AGENTKEYS_SANDBOX_ROOT, set by the host agent's sandbox mode, roots every
// absolute path a service opens (keypairs, the exported public key, the
// audit leaves, sqlite files) under that directory.
package standin
