package agent

import (
	"context"
	"errors"
	"fmt"
)

// UserSpec is an account the agent ensures exists.
type UserSpec struct {
	Name   string
	System bool   // a system account (no login, uid below 1000)
	Home   string // home directory
	Shell  string // login shell; /usr/sbin/nologin for system users
	// CreateHome creates the home directory (login users).
	CreateHome bool
}

// System is everything beyond files that touches the host. The real
// implementation execs the host's tools as root; the sandbox records calls and
// keeps users and services under Env.Root, so tests never edit the machine.
type System interface {
	// Sandbox reports whether this is the sandbox (tests, --root runs).
	Sandbox() bool
	// Run runs a command in dir with extra env (KEY=VALUE) added to the
	// agent's, returning combined output.
	Run(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error)
	// Systemctl runs one verb (daemon-reload, enable, start, restart, stop,
	// reload) on units.
	Systemctl(ctx context.Context, verb string, units ...string) error
	IsActive(ctx context.Context, unit string) (bool, error)
	IsEnabled(ctx context.Context, unit string) (bool, error)
	// LookupUser returns an account's uid and primary gid, ErrNoUser if absent.
	LookupUser(name string) (uid, gid int, err error)
	LookupGroup(name string) (gid int, err error)
	// EnsureUser creates the account (and its same-named group) if absent.
	EnsureUser(ctx context.Context, u UserSpec) (created bool, err error)
	// InstallPackage installs an OS package if absent; skipped is a reason
	// when the System cannot (the sandbox).
	// Names are Debian/Ubuntu names; the Host maps them on dnf hosts.
	InstallPackage(ctx context.Context, name string) (installed bool, skipped string, err error)
	// HasPackage reports whether an OS package is installed, changing
	// nothing (plan); skipped is a reason when the System cannot tell.
	HasPackage(ctx context.Context, name string) (present bool, skipped string, err error)
	// InstallRustToolchain installs a minimal stable Rust toolchain for root
	// with rustup (RustupCommand) when cargo is not found (LookCargo);
	// skipped is a reason when the System cannot (the sandbox).
	InstallRustToolchain(ctx context.Context) (installed bool, skipped string, err error)
	// UnitStatus is systemd's state of a unit; ActiveState is "" when the
	// System does not know the unit (the sandbox never started it).
	UnitStatus(ctx context.Context, unit string) (UnitStatus, error)
	// JournalTail returns the last n lines the unit logged.
	JournalTail(ctx context.Context, unit string, n int) (string, error)
	// NginxTest runs nginx -t on the live configuration.
	NginxTest(ctx context.Context) error
	// NginxReload asks a running nginx to reload (HUP), or starts it.
	NginxReload(ctx context.Context) error
}

// UnitStatus is what systemctl show says of a unit.
type UnitStatus struct {
	ActiveState string // active, activating, failed, inactive...
	SubState    string // running, auto-restart, dead...
	NRestarts   int    // restarts by Restart= since the unit was started
	MainPID     int
}

// Running reports an active unit with its process up.
func (u UnitStatus) Running() bool { return u.ActiveState == "active" }

func (u UnitStatus) String() string {
	s := u.ActiveState + "/" + u.SubState
	if u.NRestarts > 0 {
		s += fmt.Sprintf(", restarted %d times", u.NRestarts)
	}
	return s
}

// ErrNoUser is returned by LookupUser/LookupGroup for an absent account.
var ErrNoUser = errors.New("no such user or group")
