package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
)

// The env hook names the sandbox when --root is absent: a plan run with only
// the variable sees the secrets that an explicit --root apply minted there.
func TestRootEnvNamesTheSandbox(t *testing.T) {
	sp := sandboxtest.WriteSpec(t, sandboxtest.Spec(t, sandboxtest.NewRepo(t)))
	root := t.TempDir()
	r := runAgent(t, nil, "apply", "--spec", sp, "--root", root, "--only", "users,secrets")
	require.Equal(t, 0, r.code, r.stderr)
	master, err := os.ReadFile(filepath.Join(root, "etc/agentkeys/dev-key-service.env"))
	require.NoError(t, err)

	r = runAgent(t, []string{RootEnv + "=" + root}, "plan", "--spec", sp, "--only", "users,secrets", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var sum agent.Summary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum))
	for _, s := range sum.Steps {
		if s.Step == "secrets" || s.Step == "users" {
			assert.Equal(t, agent.OK, s.Status, "plan under %s sees the sandbox's secrets: %v", RootEnv, s.Changes)
		}
	}
	again, _ := os.ReadFile(filepath.Join(root, "etc/agentkeys/dev-key-service.env"))
	assert.Equal(t, master, again)

	// --root wins over the variable.
	other := t.TempDir()
	r = runAgent(t, []string{RootEnv + "=" + root}, "apply", "--spec", sp, "--root", other, "--only", "users,secrets")
	require.Equal(t, 0, r.code, r.stderr)
	assert.FileExists(t, filepath.Join(other, "etc/agentkeys/dev-key-service.env"))
}

func TestCargoOnPathFindsRustupUnderSudo(t *testing.T) {
	home := t.TempDir()
	bin := filepath.Join(home, ".cargo", "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "cargo"), []byte("#!/bin/sh\n"), 0o755))
	t.Setenv("HOME", home)
	t.Setenv("PATH", "/nonexistent")
	cargoOnPath()
	assert.Equal(t, "/nonexistent:"+bin, os.Getenv("PATH"))

	// Already on PATH: left alone.
	t.Setenv("PATH", bin)
	cargoOnPath()
	assert.Equal(t, bin, os.Getenv("PATH"))
	assert.False(t, strings.Contains(os.Getenv("PATH"), ":"))
}
