package main

// deps are the seams tests replace.
type deps struct{}

func defaultDeps() deps { return deps{} }
