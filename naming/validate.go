package naming

import "regexp"

var (
	accountRe = regexp.MustCompile(`^\d{12}$`)
	zoneRe    = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
	regionRe  = regexp.MustCompile(`^[a-z]{2}(-gov)?-[a-z]+-\d$`)
)

// IsAccountID reports whether s is a 12-digit AWS account id.
func IsAccountID(s string) bool { return accountRe.MatchString(s) }

// IsZone reports whether s is a lowercase DNS name without a trailing dot.
func IsZone(s string) bool { return zoneRe.MatchString(s) }

// IsRegion reports whether s looks like an AWS region.
func IsRegion(s string) bool { return regionRe.MatchString(s) }
