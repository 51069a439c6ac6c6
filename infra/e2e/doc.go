// Package e2e runs the host bring-up the Pulumi program declares over real
// SSH: the program is run under the mock engine, its recorded CopyToRemote
// and remote.Command inputs are replayed against Debian sshd in a private
// network and mount namespace, and the host agent, invoked exactly as
// declared (sudo -n), converges a sandbox root. Tests only; see
// bringup_test.go.
//
// The TestEngine* tests (engine_*_test.go, `make test-engine`) run the same
// hosts under the real Pulumi engine instead: `agentkeys deploy` through the
// Automation API, the real pulumi-command provider dialing each host at its
// stack's EIP, and the moto-backed stand-ins of test/providers.
package e2e
