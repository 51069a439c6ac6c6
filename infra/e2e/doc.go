// Package e2e runs the host bring-up the Pulumi program declares over real
// SSH: the program is run under the mock engine, its recorded CopyToRemote
// and remote.Command inputs are replayed against Debian sshd in a private
// network and mount namespace, and the host agent, invoked exactly as
// declared (sudo -n), converges a sandbox root. Tests only; see
// bringup_test.go.
package e2e
