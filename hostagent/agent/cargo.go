package agent

import (
	"os"
	"os/exec"
	"path/filepath"
)

// Where rustup installs root's toolchain (the build runs as root; the build
// step's reclaimToolchain removes both).
const (
	RootCargoHome  = "/root/.cargo"
	RootRustupHome = "/root/.rustup"
)

// RustupCommand installs a minimal stable toolchain non-interactively,
// leaving shell profiles alone (CargoOnPath finds cargo instead). It runs as
// sh -c, as root, with RustupEnv. The installer is downloaded to a file
// first: piped into sh, a failed download (an unresolvable host) exits 0
// and curl's error is lost.
const RustupCommand = `set -e; f=$(mktemp); trap 'rm -f "$f"' EXIT; ` +
	`curl --proto '=https' --tlsv1.2 -sSf -o "$f" https://sh.rustup.rs; ` +
	`sh "$f" -y --profile minimal --no-modify-path`

// RustupEnv pins the install to root's home whatever HOME sudo left.
var RustupEnv = []string{"HOME=/root", "CARGO_HOME=" + RootCargoHome, "RUSTUP_HOME=" + RootRustupHome}

// rustupBinDirs are where rustup puts cargo: the agent's $HOME, then root's.
func rustupBinDirs() []string {
	var out []string
	if home := os.Getenv("HOME"); home != "" {
		out = append(out, filepath.Join(home, ".cargo", "bin"))
	}
	return append(out, filepath.Join(RootCargoHome, "bin"))
}

// LookCargo finds cargo as the build step runs it: on PATH, else in a rustup
// bin directory ($HOME/.cargo/bin, /root/.cargo/bin), which CargoOnPath adds
// to PATH.
func LookCargo() (string, error) { return lookCargo(exec.LookPath) }

func lookCargo(lookPath func(string) (string, error)) (string, error) {
	p, err := lookPath("cargo")
	if err == nil {
		return p, nil
	}
	for _, dir := range rustupBinDirs() {
		// LookPath of a path checks that it is an executable file.
		if p, err := lookPath(filepath.Join(dir, "cargo")); err == nil {
			return p, nil
		}
	}
	return "", err
}

// CargoOnPath adds the rustup bin directory holding cargo to PATH when cargo
// is not on it: `sudo -n` resets PATH to secure_path, which never holds
// ~/.cargo/bin, so a rustup-installed toolchain is otherwise invisible to
// the build step.
func CargoOnPath() {
	if _, err := exec.LookPath("cargo"); err == nil {
		return
	}
	p, err := LookCargo()
	if err != nil {
		return
	}
	path := filepath.Dir(p)
	if old := os.Getenv("PATH"); old != "" {
		path = old + string(os.PathListSeparator) + path
	}
	os.Setenv("PATH", path)
}
