package naming

import (
	"net"
	"net/url"
	"regexp"
	"strconv"
)

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

// IsResolver reports whether s is host:port of a DNS resolver with a
// numeric port (the Pulumi config and the host agent accept the same).
func IsResolver(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// IsACMEDirectory reports whether s is an absolute https URL without
// credentials, as an ACME directory must be.
func IsACMEDirectory(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil
}
