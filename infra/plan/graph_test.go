package plan

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A component dependency means "after all of its custom descendants", as the
// engine orders it.
func TestDependsOnExpandsComponents(t *testing.T) {
	p := &Plan{Resources: []*Resource{
		{URN: "eip", Custom: true},
		{URN: "rec", Custom: true, Dependencies: []string{"eip"}},
		{URN: "host", Custom: false},
		{URN: "copy", Custom: true, Parent: "host", Dependencies: []string{"rec"}},
		{URN: "apply", Custom: true, Parent: "host", Dependencies: []string{"copy"}},
		{URN: "provider", Custom: true, Dependencies: []string{"host"}},
		{URN: "unrelated", Custom: true},
	}}
	assert.True(t, p.DependsOn("provider", "apply"))
	assert.True(t, p.DependsOn("provider", "eip"))
	assert.False(t, p.DependsOn("eip", "provider"))
	assert.False(t, p.DependsOn("unrelated", "eip"))
	assert.Equal(t, []string{"apply", "copy"}, p.DirectDeps("provider"))

	var chain []string
	for _, r := range p.CriticalPath() {
		chain = append(chain, r.URN)
	}
	assert.Equal(t, []string{"eip", "rec", "copy", "apply", "provider"}, chain)
}
