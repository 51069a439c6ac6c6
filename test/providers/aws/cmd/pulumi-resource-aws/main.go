// Command pulumi-resource-aws is the moto-backed test stand-in for the
// pulumi-aws provider plugin (see package test/providers/aws). It is built
// by `make deps` into the project's PULUMI_HOME and never shipped.
package main

import (
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"

	"github.com/agentkeys/agentkeys-infra/test/providers/aws"
)

func main() {
	err := provider.Main("aws", func(*provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return plugin.NewProviderServer(aws.New()), nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
