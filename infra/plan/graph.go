package plan

import "sort"

// Descendants maps each resource URN to all resources parented under it.
func (p *Plan) Descendants() map[string][]string {
	kids := map[string][]string{}
	for _, r := range p.Resources {
		if r.Parent != "" {
			kids[r.Parent] = append(kids[r.Parent], r.URN)
		}
	}
	out := map[string][]string{}
	var walk func(u string) []string
	walk = func(u string) []string {
		if d, ok := out[u]; ok {
			return d
		}
		var all []string
		for _, k := range kids[u] {
			all = append(all, k)
			all = append(all, walk(k)...)
		}
		out[u] = all
		return all
	}
	for _, r := range p.Resources {
		walk(r.URN)
	}
	return out
}

// DirectDeps is a resource's dependencies with components expanded to their
// custom descendants, as the engine orders them.
func (p *Plan) DirectDeps(urn string) []string {
	byURN, desc := p.ByURN(), p.Descendants()
	seen := map[string]bool{}
	var out []string
	r := byURN[urn]
	if r == nil {
		return nil
	}
	for _, d := range r.Dependencies {
		targets := []string{d}
		if dr := byURN[d]; dr != nil && !dr.Custom {
			targets = desc[d]
		}
		for _, t := range targets {
			if tr := byURN[t]; tr != nil && tr.Custom && !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	sort.Strings(out)
	return out
}

// DependsOn reports whether resource a waits for resource b, directly or
// transitively.
func (p *Plan) DependsOn(a, b string) bool {
	seen := map[string]bool{}
	var visit func(u string) bool
	visit = func(u string) bool {
		if seen[u] {
			return false
		}
		seen[u] = true
		for _, d := range p.DirectDeps(u) {
			if d == b || visit(d) {
				return true
			}
		}
		return false
	}
	return visit(a)
}

// CriticalPath is the longest chain of dependent custom resources: the
// minimum number of sequential cloud operations one `pulumi up` needs.
func (p *Plan) CriticalPath() []*Resource {
	byURN := p.ByURN()
	memo := map[string][]string{}
	var longest func(u string) []string
	longest = func(u string) []string {
		if c, ok := memo[u]; ok {
			return c
		}
		memo[u] = []string{u} // cycle guard
		best := []string{}
		for _, d := range p.DirectDeps(u) {
			if c := longest(d); len(c) > len(best) {
				best = c
			}
		}
		chain := append(append([]string{}, best...), u)
		memo[u] = chain
		return chain
	}
	var best []string
	for _, r := range p.Resources {
		if !r.Custom {
			continue
		}
		if c := longest(r.URN); len(c) > len(best) {
			best = c
		}
	}
	out := make([]*Resource, len(best))
	for i, u := range best {
		out[i] = byURN[u]
	}
	return out
}
