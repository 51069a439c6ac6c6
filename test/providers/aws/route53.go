package aws

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

func route53Types(p *awsProvider) []*standin.Type { return []*standin.Type{recordType(p)} }

// recordName is the record name's StateFunc: lowercase, no trailing dot.
func recordName(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// fqdnIn expands a name relative to its zone (expandRecordName).
func fqdnIn(name, zone string) string {
	name, zone = recordName(name), recordName(zone)
	if name == zone || strings.HasSuffix(name, "."+zone) {
		return name
	}
	return name + "." + zone
}

// txtQuote quotes a TXT/SPF value for Route 53 unless it already is
// (expandResourceRecords / flattenResourceRecords in record.go).
func txtQuote(typ, v string) string {
	if (typ == "TXT" || typ == "SPF") && !strings.HasPrefix(v, `"`) {
		return `"` + v + `"`
	}
	return v
}

func txtUnquote(typ, v string) string {
	if typ == "TXT" || typ == "SPF" {
		v = strings.TrimPrefix(strings.TrimSuffix(v, `"`), `"`)
		v = strings.ReplaceAll(v, `" "`, "")
	}
	return v
}

func cleanZoneID(id string) string { return strings.TrimPrefix(id, "/hostedzone/") }

// rrTypes are the RRType values (route53 API reference).
var rrTypes = []string{"SOA", "A", "TXT", "NS", "CNAME", "MX", "NAPTR", "PTR", "SRV", "SPF", "AAAA", "CAA", "DS", "TLSA", "SSHFP", "SVCB", "HTTPS"}

// recordType is aws:route53/record:Record (internal/service/route53/record.go):
// zoneId and name replace; type, ttl and records update; records is a set;
// allowOverwrite turns the CREATE into an UPSERT. The ID is
// "<zoneId>_<name>_<type>".
func recordType(p *awsProvider) *standin.Type {
	zoneName := func(ctx context.Context, zoneID string) (string, error) {
		out, err := p.get().route53.GetHostedZone(ctx, &route53.GetHostedZoneInput{Id: aws.String(cleanZoneID(zoneID))})
		if err != nil {
			return "", fmt.Errorf("reading Route 53 Hosted Zone (%s): %w", zoneID, err)
		}
		return aws.ToString(out.HostedZone.Name), nil
	}
	rrset := func(in props, zone string) *r53types.ResourceRecordSet {
		typ := str(in, "type")
		rs := &r53types.ResourceRecordSet{Name: aws.String(fqdnIn(str(in, "name"), zone)), Type: r53types.RRType(typ)}
		if standin.Has(in, "ttl") {
			rs.TTL = aws.Int64(int64(standin.Int(in, "ttl")))
		}
		for _, v := range strs(in, "records") {
			rs.ResourceRecords = append(rs.ResourceRecords, r53types.ResourceRecord{Value: aws.String(txtQuote(typ, v))})
		}
		return rs
	}
	change := func(ctx context.Context, zoneID string, changes ...r53types.Change) error {
		_, err := p.get().route53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(cleanZoneID(zoneID)),
			ChangeBatch:  &r53types.ChangeBatch{Changes: changes, Comment: aws.String("Managed by Pulumi")},
		})
		return err
	}
	read := func(ctx context.Context, _ string, state props) (props, error) {
		c := p.get()
		zoneID := str(state, "zoneId")
		zone, err := zoneName(ctx, zoneID)
		if notFound(err, "NoSuchHostedZone") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		name, typ := fqdnIn(str(state, "name"), zone), str(state, "type")
		out, err := c.route53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(cleanZoneID(zoneID)),
			StartRecordName: aws.String(name), StartRecordType: r53types.RRType(typ), MaxItems: aws.Int32(1)})
		if err != nil {
			return nil, err
		}
		for _, rs := range out.ResourceRecordSets {
			if recordName(aws.ToString(rs.Name)) != name || string(rs.Type) != typ {
				continue
			}
			var vals []string
			for _, r := range rs.ResourceRecords {
				vals = append(vals, txtUnquote(typ, aws.ToString(r.Value)))
			}
			m := mk(map[string]any{"zoneId": zoneID, "name": recordName(str(state, "name")), "type": typ, "records": vals, "fqdn": name})
			if rs.TTL != nil {
				m["ttl"] = resource.NewNumberProperty(float64(*rs.TTL))
			}
			return m, nil
		}
		return nil, nil
	}
	return &standin.Type{
		Token: "aws:route53/record:Record",
		Inputs: []string{"aliases", "allowOverwrite", "cidrRoutingPolicy", "failoverRoutingPolicies", "geolocationRoutingPolicies",
			"geoproximityRoutingPolicy", "healthCheckId", "latencyRoutingPolicies", "multivalueAnswerRoutingPolicy", "name",
			"records", "setIdentifier", "ttl", "type", "weightedRoutingPolicies", "zoneId"},
		Required:         []string{"name", "type", "zoneId"},
		ForceNew:         []string{"name", "zoneId"},
		OptionalComputed: []string{"allowOverwrite"},
		Sets:             []string{"records"},
		Equivalent: map[string]func(a, b resource.PropertyValue) bool{"name": func(a, b resource.PropertyValue) bool {
			return a.IsString() && b.IsString() && recordName(a.StringValue()) == recordName(b.StringValue())
		}},
		Validate: func(in props) []plugin.CheckFailure {
			out := oneOf(in, "type", rrTypes...)
			if has(in, "records") == has(in, "aliases") {
				out = append(out, standin.Fail("records", "exactly one of `aliases,records` must be specified"))
			}
			if has(in, "ttl") && !has(in, "records") {
				out = append(out, standin.Fail("ttl", "all of `records,ttl` must be specified"))
			}
			if has(in, "aliases") {
				out = append(out, standin.Fail("aliases", "stand-in: alias records are not supported"))
			}
			return out
		},
		Computed: []string{"fqdn"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			zone, err := zoneName(ctx, str(in, "zoneId"))
			if err != nil {
				return "", nil, err
			}
			action := r53types.ChangeActionCreate
			if standin.Bool(in, "allowOverwrite") {
				action = r53types.ChangeActionUpsert
			}
			if err := change(ctx, str(in, "zoneId"), r53types.Change{Action: action, ResourceRecordSet: rrset(in, zone)}); err != nil {
				return "", nil, err
			}
			id := strings.Join([]string{cleanZoneID(str(in, "zoneId")), recordName(str(in, "name")), str(in, "type")}, "_")
			live, err := read(ctx, id, in)
			return id, live, err
		},
		Read: read,
		Update: func(ctx context.Context, _ string, olds, news props, _ []string) (props, error) {
			zone, err := zoneName(ctx, str(news, "zoneId"))
			if err != nil {
				return nil, err
			}
			var changes []r53types.Change
			if str(olds, "type") != str(news, "type") {
				changes = append(changes, r53types.Change{Action: r53types.ChangeActionDelete, ResourceRecordSet: rrset(olds, zone)})
			}
			changes = append(changes, r53types.Change{Action: r53types.ChangeActionUpsert, ResourceRecordSet: rrset(news, zone)})
			if err := change(ctx, str(news, "zoneId"), changes...); err != nil {
				return nil, err
			}
			return read(ctx, "", news)
		},
		Delete: func(ctx context.Context, _ string, state props) error {
			zone, err := zoneName(ctx, str(state, "zoneId"))
			if notFound(err, "NoSuchHostedZone") {
				return nil
			}
			if err != nil {
				return err
			}
			// Route 53 deletes only an exact match: use what is live.
			live, err := read(ctx, "", state)
			if err != nil || live == nil {
				return err
			}
			err = change(ctx, str(state, "zoneId"), r53types.Change{Action: r53types.ChangeActionDelete, ResourceRecordSet: rrset(live, zone)})
			if notFound(err, "InvalidChangeBatch") && strings.Contains(err.Error(), "not found") {
				return nil
			}
			return err
		},
	}
}
