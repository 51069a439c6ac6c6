package main

// deps are the seams tests replace: the Pulumi engine (its CLI is absent on
// dev machines) and the ssh executable.
type deps struct {
	engine engineFactory
	sshBin string
}

func defaultDeps() deps { return deps{engine: autoEngine, sshBin: "ssh"} }
