package agent

import "context"

// reloadVerbs are the systemctl verbs that reload configuration.
var reloadVerbs = map[string]bool{"daemon-reload": true, "reload": true, "try-reload-or-restart": true, "reload-or-restart": true}

// countingSystem counts in Counters.Reloads the reloads steps ask systemd
// for themselves (daemon-reload, sshd's reload). Runner.Run puts it around
// the System for the run. nginx's reloads go through Env.ReloadNginx,
// which counts them (the Host's nginx reload calls its own Systemctl, not
// this one); restarts are Env.Restart's.
type countingSystem struct {
	System
	env *Env
}

func (c countingSystem) Systemctl(ctx context.Context, verb string, units ...string) error {
	err := c.System.Systemctl(ctx, verb, units...)
	if err == nil && reloadVerbs[verb] {
		c.env.count(func(n *Counters) { n.Reloads++ })
	}
	return err
}
