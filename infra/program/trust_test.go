package program

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// The broker mints its STS tokens with the audience and against the memory
// role its env file names; the trust every data role gets must accept that
// audience, and the memory role must be the class role of the same stack.
func TestDeployedBrokerMatchesTheTrust(t *testing.T) {
	for _, stack := range []string{"prod", "test", "test-2", "base"} {
		t.Run(stack, func(t *testing.T) {
			cfg, err := config.LoadFile("../..", stack)
			require.NoError(t, err)
			s, err := HostSpec(cfg, "198.51.100.10")
			require.NoError(t, err)
			n := cfg.Names()
			env := s.Broker().Env
			trust := policy.FederatedTrust(n)
			require.Len(t, trust.Statement, 1)
			aud := trust.Statement[0].Condition["StringEquals"][n.BrokerHost+":aud"]
			assert.Equal(t, aud, env["BROKER_STS_AUDIENCE"], "the aud the broker stamps is the one the trust pins")
			assert.Equal(t, n.ClassRoleARNs["memory"], env["MEMORY_ROLE_ARN"])
			assert.Equal(t, n.DataRoleARN, env["BROKER_DATA_ROLE_ARN"])
			assert.Equal(t, n.Issuer, env["BROKER_OIDC_ISSUER"], "the issuer whose provider the trust names")
		})
	}
}
