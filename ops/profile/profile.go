// Package profile attaches a stack's instance profile to its broker EC2: the
// one step pulumi-aws cannot declare for an instance the program does not own.
package profile

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// EC2 is the part of the EC2 API Attach needs.
type EC2 interface {
	DescribeIamInstanceProfileAssociations(context.Context, *ec2.DescribeIamInstanceProfileAssociationsInput, ...func(*ec2.Options)) (*ec2.DescribeIamInstanceProfileAssociationsOutput, error)
	AssociateIamInstanceProfile(context.Context, *ec2.AssociateIamInstanceProfileInput, ...func(*ec2.Options)) (*ec2.AssociateIamInstanceProfileOutput, error)
	ReplaceIamInstanceProfileAssociation(context.Context, *ec2.ReplaceIamInstanceProfileAssociationInput, ...func(*ec2.Options)) (*ec2.ReplaceIamInstanceProfileAssociationOutput, error)
}

// Result says what Attach did.
type Result struct {
	Instance string
	Profile  string
	// Action is "ok" (already attached), "associated" or "replaced".
	Action   string
	Previous string // the profile that was replaced
}

// Attach makes profile the instance's only instance profile; re-running it
// changes nothing.
func Attach(ctx context.Context, c EC2, instanceID, profile string) (Result, error) {
	r := Result{Instance: instanceID, Profile: profile}
	out, err := c.DescribeIamInstanceProfileAssociations(ctx, &ec2.DescribeIamInstanceProfileAssociationsInput{
		Filters: []types.Filter{{Name: aws.String("instance-id"), Values: []string{instanceID}}},
	})
	if err != nil {
		return r, fmt.Errorf("describe instance profile associations of %s: %w", instanceID, err)
	}
	var current []types.IamInstanceProfileAssociation
	for _, a := range out.IamInstanceProfileAssociations {
		if a.State == types.IamInstanceProfileAssociationStateAssociated || a.State == types.IamInstanceProfileAssociationStateAssociating {
			current = append(current, a)
		}
	}
	switch len(current) {
	case 0:
		if _, err := c.AssociateIamInstanceProfile(ctx, &ec2.AssociateIamInstanceProfileInput{
			InstanceId: aws.String(instanceID), IamInstanceProfile: &types.IamInstanceProfileSpecification{Name: aws.String(profile)},
		}); err != nil {
			return r, fmt.Errorf("associate %s with %s: %w", profile, instanceID, err)
		}
		r.Action = "associated"
		return r, nil
	case 1:
		prev := profileName(current[0])
		if prev == profile {
			r.Action = "ok"
			return r, nil
		}
		if _, err := c.ReplaceIamInstanceProfileAssociation(ctx, &ec2.ReplaceIamInstanceProfileAssociationInput{
			AssociationId: current[0].AssociationId, IamInstanceProfile: &types.IamInstanceProfileSpecification{Name: aws.String(profile)},
		}); err != nil {
			return r, fmt.Errorf("replace %s with %s on %s: %w", prev, profile, instanceID, err)
		}
		r.Action, r.Previous = "replaced", prev
		return r, nil
	}
	return r, fmt.Errorf("instance %s has %d instance profile associations; disassociate all but one (aws ec2 disassociate-iam-instance-profile) and re-run", instanceID, len(current))
}

// profileName is the name in an association's profile ARN (…:instance-profile/<path/>name).
func profileName(a types.IamInstanceProfileAssociation) string {
	if a.IamInstanceProfile == nil || a.IamInstanceProfile.Arn == nil {
		return ""
	}
	arn := *a.IamInstanceProfile.Arn
	return arn[strings.LastIndex(arn, "/")+1:]
}
