package main

import "github.com/agentkeys/agentkeys-infra/ops/stackcfg"

// deps are the seams tests replace: the Pulumi engine (its CLI is absent on
// dev machines) and the ssh executable.
type deps struct {
	engine engineFactory
	sshBin string
	// pulumi reads stack outputs and history (never selecting a stack);
	// nil: found at run time (stackcfg.FindPulumi).
	pulumi *stackcfg.Pulumi
}

func defaultDeps() deps { return deps{engine: autoEngine, sshBin: "ssh"} }
