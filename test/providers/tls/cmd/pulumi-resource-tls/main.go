// Command pulumi-resource-tls is the test stand-in for the pulumi-tls
// provider plugin (see package test/providers/tls): built by `make deps`
// into the project's PULUMI_HOME, never shipped.
package main

import (
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"

	"github.com/agentkeys/agentkeys-infra/test/providers/tls"
)

func main() {
	err := provider.Main("tls", func(*provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return plugin.NewProviderServer(tls.New()), nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
