// Package contract is the runtime contract of the AgentKeys services the
// broker host runs, read from their sources: for each binary its package,
// flags, every environment variable it reads (required or not, format,
// default, what it does with a bad value), where it binds, the files it
// loads and writes, its secrets, restart semantics and health paths. Every
// fact carries a Ref to the source file it was read from.
//
// It is the one place that spells a variable name, a port or a host path of
// the services: the Pulumi program renders the host spec from Deploy, the
// host agent renders units and env files from that spec, the test stand-ins
// enforce Service.Reads, and the policy package takes the AWS calls from
// Service.AWS.
//
// Which sources. The index holds two copies of the AgentKeys workspace:
// joker4002/agentKeys (a fork, older for every crate) and its upstream
// litentry/agent-terrier. The runbook's own deploy script,
// scripts/setup-broker-host.sh at joker4002@765af13d, runs the broker with
// `keygen` and --export-session-pubkey-to and the signer with --signer-only,
// flags that only the agent-terrier versions have; so the contract follows
// the newest agent-terrier files reachable (each Ref names repo, path and
// commit), and the script for the layout operators know (unit names, env
// files, nginx sites, /usr/local/bin). Where the sources are silent or
// disagree, a Decision comment says what was chosen and where to change it.
package contract
