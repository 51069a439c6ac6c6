package agent

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

// Actions of the intent journal: what a step owes the host once the files
// it is about to change are in place.
const (
	ActionDaemonReload = "daemon-reload"
	ActionReloadNginx  = "reload:nginx"
	ActionReloadSSHD   = "reload:sshd"
	restartPrefix      = "restart:"
)

// ActionRestart is the journal action that (re)starts unit.
func ActionRestart(unit string) string { return restartPrefix + unit }

// RestartOf returns the unit of a restart action.
func RestartOf(action string) (unit string, ok bool) { return strings.CutPrefix(action, restartPrefix) }

// AgentDir is the agent's own root-only directory in the state dir (the
// services' user owns the state dir, but cannot rename, replace or read
// what is in a root-owned 0700 directory).
func AgentDir(stateDir string) string { return path.Join(stateDir, "hostagent") }

// JournalPath is the host path of the intent journal.
func JournalPath(stateDir string) string { return path.Join(AgentDir(stateDir), "pending.json") }

type journal struct {
	Pending []string `json:"pending"`
}

// journalMu serialises the journal's read-modify-write (the certificate
// step's workers record intents concurrently).
var journalMu sync.Mutex

// Pending returns the actions a run recorded with Intend and did not mark
// Done: a run killed between changing files and reloading or restarting
// what reads them leaves them here, and the step that owns each action
// carries it out at its next run.
func (e *Env) Pending() ([]string, error) {
	journalMu.Lock()
	defer journalMu.Unlock()
	j, err := e.readJournal()
	return j.Pending, err
}

// IsPending reports whether action is owed.
func (e *Env) IsPending(action string) (bool, error) {
	p, err := e.Pending()
	return slices.Contains(p, action), err
}

func (e *Env) readJournal() (journal, error) {
	var j journal
	p := JournalPath(e.Spec.StateDir)
	found, err := fsx.ReadJSON(e.Root, p, &j)
	if err != nil && !found {
		return j, err
	}
	if err != nil {
		return j, fmt.Errorf("intent journal %s does not parse (%v); it lists reloads and restarts an interrupted run owes: reload nginx and sshd, run systemctl daemon-reload, restart the agentkeys-* units, then delete it", p, err)
	}
	return j, nil
}

func (e *Env) writeJournal(j journal) error {
	p := JournalPath(e.Spec.StateDir)
	if len(j.Pending) == 0 {
		_, err := fsx.RemoveFile(e.Root, p)
		return err
	}
	if _, err := fsx.EnsureDir(e.Root, AgentDir(e.Spec.StateDir), 0o700, e.rootOwner()); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(j, "", "  ")
	_, err := fsx.WriteFileAtomic(e.Root, p, append(b, '\n'), 0o600, e.rootOwner())
	return err
}

// Intend records actions in the journal, durably, before the caller
// changes the files that make them necessary. Nothing in a dry run.
func (e *Env) Intend(actions ...string) error {
	return e.updateJournal(actions, func(p []string) []string {
		for _, a := range actions {
			if !slices.Contains(p, a) {
				p = append(p, a)
			}
		}
		return p
	})
}

// Done removes actions from the journal once they succeeded.
func (e *Env) Done(actions ...string) error {
	return e.updateJournal(actions, func(p []string) []string {
		return slices.DeleteFunc(p, func(a string) bool { return slices.Contains(actions, a) })
	})
}

// updateJournal applies edit to the pending actions and writes the journal
// only when that changed them.
func (e *Env) updateJournal(actions []string, edit func([]string) []string) error {
	if e.DryRun || len(actions) == 0 {
		return nil
	}
	journalMu.Lock()
	defer journalMu.Unlock()
	j, err := e.readJournal()
	if err != nil {
		return err
	}
	before := slices.Clone(j.Pending)
	if j.Pending = edit(j.Pending); slices.Equal(before, j.Pending) {
		return nil
	}
	return e.writeJournal(j)
}

// Differs reports whether WriteFile would change path.
func (e *Env) Differs(path string, data []byte, mode fs.FileMode, o fsx.Owner) (bool, error) {
	return fsx.Differs(e.Root, path, data, mode, o)
}
