// Package engine runs `agentkeys deploy` through the real Pulumi engine, as
// CI drives it: the Automation API with the program compiled in (an inline
// program), a file backend in a temporary directory, the real
// pulumi-command provider over real SSH, and the moto-backed stand-ins for
// pulumi-aws and pulumi-tls (test/providers), all installed by `make deps`
// (.ci/install.d/engine.sh). Tests only; `make test-engine` runs them.
package engine
