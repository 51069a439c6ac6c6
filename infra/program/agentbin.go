package program

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// AgentBinaryEnv names a prebuilt host agent to ship instead of building one.
const AgentBinaryEnv = "AGENTKEYS_HOSTAGENT_BINARY"

var buildOnce struct {
	sync.Mutex
	built map[string][2]string // arch -> path, hash
}

// AgentBinary returns the linux/<arch> host agent to copy to the broker and
// its sha256. Unless AGENTKEYS_HOSTAGENT_BINARY names one, it is built from
// this module reproducibly (-trimpath, no build id, no VCS stamp, static), so
// the same source yields the same hash and the bring-up re-runs only on change.
func AgentBinary(root, arch string) (string, string, error) {
	buildOnce.Lock()
	defer buildOnce.Unlock()
	if p := os.Getenv(AgentBinaryEnv); p != "" {
		h, err := fileHash(p)
		if err != nil {
			return "", "", fmt.Errorf("%s=%s: %w", AgentBinaryEnv, p, err)
		}
		return p, h, nil
	}
	if b, ok := buildOnce.built[arch]; ok {
		return b[0], b[1], nil
	}
	if root == "" {
		var err error
		if root, err = moduleRoot(); err != nil {
			return "", "", err
		}
	}
	// Its own name: `make hostagent` stamps a version into bin/agentkeys-hostagent.
	out := filepath.Join(root, "bin", "agentkeys-hostagent-linux-"+arch)
	// Built beside it and renamed into place: programs of several stacks
	// (deploy --parallel) build at once, and a reader sees a whole binary.
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	defer os.Remove(tmp)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=",
		"-o", tmp, "./hostagent/cmd/agentkeys-hostagent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building the host agent (set %s to ship a prebuilt one): %v\n%s", AgentBinaryEnv, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", "", err
	}
	h, err := fileHash(out)
	if err != nil {
		return "", "", err
	}
	if buildOnce.built == nil {
		buildOnce.built = map[string][2]string{}
	}
	buildOnce.built[arch] = [2]string{out, h}
	return out, h, nil
}

func fileHash(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// moduleRoot finds the directory of go.mod above the working directory (the
// Pulumi CLI runs the program in infra/).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory; set %s", AgentBinaryEnv)
		}
		dir = parent
	}
}
