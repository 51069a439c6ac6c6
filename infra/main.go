// Command infra is the Pulumi program of the agentkeys project (Pulumi.yaml main).
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/infra/program"
)

func main() { pulumi.Run(program.Run) }
