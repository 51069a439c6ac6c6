package profile

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
)

// TestAttachAgainstMoto attaches, re-runs (no change) and replaces a stale
// profile on an instance in moto_server.
func TestAttachAgainstMoto(t *testing.T) {
	mototest.StartPlain(t)
	ctx := context.Background()
	cfg := mototest.Config(t)
	ec, ic := ec2.NewFromConfig(cfg), iam.NewFromConfig(cfg)
	for _, name := range []string{"agentkeys-test-broker-ssm-2", "launch-wizard-profile"} {
		_, err := ic.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(name)})
		require.NoError(t, err)
	}
	run, err := ec.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		InstanceType: types.InstanceTypeT3Small})
	require.NoError(t, err)
	id := *run.Instances[0].InstanceId

	r, err := Attach(ctx, ec, id, "agentkeys-test-broker-ssm-2")
	require.NoError(t, err)
	assert.Equal(t, "associated", r.Action)
	r, err = Attach(ctx, ec, id, "agentkeys-test-broker-ssm-2")
	require.NoError(t, err)
	assert.Equal(t, "ok", r.Action, "a re-run changes nothing")

	// An instance launched with another profile gets this stack's instead.
	r, err = Attach(ctx, ec, id, "launch-wizard-profile")
	require.NoError(t, err)
	assert.Equal(t, Result{Instance: id, Profile: "launch-wizard-profile", Action: "replaced", Previous: "agentkeys-test-broker-ssm-2"}, r)
	out, err := ec.DescribeIamInstanceProfileAssociations(ctx, &ec2.DescribeIamInstanceProfileAssociationsInput{
		Filters: []types.Filter{{Name: aws.String("instance-id"), Values: []string{id}}},
	})
	require.NoError(t, err)
	var attached []string
	for _, a := range out.IamInstanceProfileAssociations {
		if a.State == types.IamInstanceProfileAssociationStateAssociated {
			attached = append(attached, profileName(a))
		}
	}
	assert.Equal(t, []string{"launch-wizard-profile"}, attached)

	_, err = Attach(ctx, ec, "i-0000000000000dead", "agentkeys-test-broker-ssm-2")
	require.Error(t, err, "an unknown instance is an error, not a silent success")
}
