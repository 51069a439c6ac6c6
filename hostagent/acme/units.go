package acme

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// CertbotTimer is the distro certbot package's renewal timer, disabled once
// the agent has adopted certbot's certificates (two renewers would fight).
const CertbotTimer = "certbot.timer"

// Renew unit names; the units step installs and enables the timer.
const (
	RenewService = "agentkeys-hostagent-renew.service"
	RenewTimer   = "agentkeys-hostagent-renew.timer"
)

// NginxVhostDirs are where a renewal may rewrite vhosts (Phase A to B):
// conf.d, and the sites-available files with their sites-enabled links.
var NginxVhostDirs = []string{"/etc/nginx/conf.d", "/etc/nginx/sites-available", "/etc/nginx/sites-enabled"}

// RenewUnits returns the renew timer and its service, by unit file name.
// specFile is an absolute host path. The service runs the installed agent
// (spec.AgentPath), never the copy that wrote the unit, which may be a
// staged one under /home that ProtectHome hides. It runs as root (it writes
// private keys and reloads nginx) but may write only the certificate,
// state, webroot, vhost and nginx runtime paths; each is optional ("-"), so
// a path that does not exist yet does not fail the unit.
func RenewUnits(specFile, stateDir, webroot string) map[string]string {
	rw := append([]string{nginx.CertDir, stateDir, webroot, "/run", "/var/log/nginx", "/var/lib/nginx"}, NginxVhostDirs...)
	sort.Strings(rw)
	agentBin := spec.AgentPath
	service := fmt.Sprintf(`# Managed by agentkeys-hostagent; edits are overwritten.
[Unit]
Description=AgentKeys host agent: renew due TLS certificates
Documentation=man:systemd.timer(5)
After=network-online.target nginx.service
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=%s renew --spec %s
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectSystem=strict
ReadWritePaths=%s
ProtectHome=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# Root for root-owned keys and the nginx reload; only what nginx -t needs
# (it binds the listen ports, 80 and 443, and switches to www-data).
CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_SETUID CAP_SETGID CAP_NET_BIND_SERVICE
UMask=0077
ProtectProc=invisible
ProcSubset=pid
PrivateMounts=yes
`, agentBin, specFile, optionalPaths(rw))
	timer := fmt.Sprintf(`# Managed by agentkeys-hostagent; edits are overwritten.
[Unit]
Description=AgentKeys host agent: daily certificate renewal check

[Timer]
OnCalendar=daily
RandomizedDelaySec=6h
Persistent=true
Unit=%s

[Install]
WantedBy=timers.target
`, RenewService)
	return map[string]string{RenewService: service, RenewTimer: timer}
}

// optionalPaths renders ReadWritePaths entries, each "-"-prefixed: absent
// paths are ignored instead of failing the service's namespace setup.
func optionalPaths(xs []string) string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = "-" + path.Clean(x)
	}
	return strings.Join(out, " ")
}
