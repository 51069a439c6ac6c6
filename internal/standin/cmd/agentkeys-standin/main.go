// Command agentkeys-standin behaves as the AgentKeys service it is invoked
// as (see package standin): `agentkeys-standin agentkeys-broker-server
// --port 8091`, or through a link named after the package.
package main

import (
	"os"

	"github.com/agentkeys/agentkeys-infra/internal/standin"
)

func main() {
	os.Exit(standin.Main(os.Args, os.Stdout, os.Stderr))
}
