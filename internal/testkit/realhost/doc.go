// Package realhost boots a real Debian host with systemd as PID 1 for tests:
// a throwaway copy of a cached debootstrap root, run by systemd-nspawn in its
// own network namespace, reachable over SSH as the login user `ubuntu` (key
// login, passwordless sudo), with NAT to the apt mirror.
//
//	h := realhost.Boot(t, realhost.Options{})
//	r := h.Run("sudo -n systemctl is-system-running")
//
// Everything a container needs on the host side (overlay mount, cgroup
// folders, netns + veth, nft table, ip_forward) is recorded on disk before it
// is created, removed by t.Cleanup or on SIGINT/SIGTERM, and, when the test
// process died without either, by the sweeper that runs before every boot.
//
// See FIELD-NOTES.md ("A real systemd host on this machine") for the recipe.
package realhost
