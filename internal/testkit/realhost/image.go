package realhost

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// CacheDir holds the debootstrap roots, one per recipe hash.
const CacheDir = "/var/cache/agentkeys-realhost"

// maxImageAge bounds how long a root is trusted: older ones are rebuilt so
// point releases reach the tests (the agent's apt-get update does the rest).
const maxImageAge = 30 * 24 * time.Hour

// Recipe is everything that decides the content of the cached root. Any
// change gives another hash, hence another cache directory.
type Recipe struct {
	// Version is bumped whenever customize changes.
	Version int      `json:"version"`
	Suite   string   `json:"suite"`
	Variant string   `json:"variant"`
	Include []string `json:"include"`
	Mirror  string   `json:"mirror"`
	Arch    string   `json:"arch"`
	User    string   `json:"user"`
}

// DefaultUser is the login user, as on the Ubuntu EC2 AMI.
const DefaultUser = "ubuntu"

// DefaultRecipe is a minimal bookworm broker host. nginx, git and the build
// tools are deliberately absent: the agent's packages step installs them.
func DefaultRecipe() (Recipe, error) {
	mirror, err := Mirror()
	if err != nil {
		return Recipe{}, err
	}
	return Recipe{
		Version: 1,
		Suite:   "bookworm",
		Variant: "minbase",
		Include: []string{
			"systemd", "systemd-sysv", "dbus", "libpam-systemd", // PID 1, logind sessions for SSH logins
			"openssh-server", "sudo", "iproute2", "ca-certificates",
			"curl", "procps", "netbase", "less",
		},
		Mirror: mirror,
		Arch:   dpkgArch(),
		User:   DefaultUser,
	}, nil
}

// Hash names the recipe's cache directory.
func (r Recipe) Hash() string {
	b, _ := json.Marshal(r)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

func dpkgArch() string {
	if out, err := exec.Command("dpkg", "--print-architecture").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return "amd64"
}

// MirrorEnv overrides the Debian mirror debootstrap uses.
const MirrorEnv = "AGENTKEYS_REALHOST_MIRROR"

// Mirror is the Debian mirror apt on this machine already uses: the first
// `deb` source (one-line or deb822) with a plain release suite and the main
// component, not a security or updates archive.
func Mirror() (string, error) {
	if m := os.Getenv(MirrorEnv); m != "" {
		return strings.TrimRight(m, "/"), nil
	}
	files := []string{"/etc/apt/sources.list"}
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var srcs []aptSource
		switch {
		case strings.HasSuffix(f, ".sources"):
			srcs = parseDeb822(string(b))
		case f == "/etc/apt/sources.list" || strings.HasSuffix(f, ".list"):
			srcs = parseOneLine(string(b))
		}
		for _, s := range srcs {
			if m := s.debianMirror(); m != "" {
				return m, nil
			}
		}
	}
	return "", fmt.Errorf("no Debian mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/*.{list,sources} " +
		"(need a `deb` entry of a release suite with component main); set " + MirrorEnv + "=http://deb.debian.org/debian")
}

type aptSource struct {
	types, uris, suites, components []string
	enabled                         bool
}

func (s aptSource) debianMirror() string {
	if !s.enabled || !slices.Contains(s.types, "deb") || !slices.Contains(s.components, "main") {
		return ""
	}
	plain := slices.ContainsFunc(s.suites, func(x string) bool { return x != "" && !strings.Contains(x, "-") && !strings.Contains(x, "/") })
	if !plain {
		return ""
	}
	for _, u := range s.uris {
		if strings.Contains(u, "security") || !strings.HasPrefix(u, "http") {
			continue
		}
		return strings.TrimRight(u, "/")
	}
	return ""
}

func parseDeb822(text string) []aptSource {
	var out []aptSource
	for _, stanza := range strings.Split(text, "\n\n") {
		s := aptSource{enabled: true}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			f := strings.Fields(v)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "types":
				s.types = f
			case "uris":
				s.uris = f
			case "suites":
				s.suites = f
			case "components":
				s.components = f
			case "enabled":
				s.enabled = strings.TrimSpace(v) != "no"
			}
		}
		if len(s.uris) > 0 {
			out = append(out, s)
		}
	}
	return out
}

func parseOneLine(text string) []aptSource {
	var out []aptSource
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		typ := f[0]
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=…]
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) < 2 {
			continue
		}
		out = append(out, aptSource{types: []string{typ}, uris: []string{f[0]}, suites: []string{f[1]}, components: f[2:], enabled: true})
	}
	return out
}

// Image is a validated cached root. While a container uses it, its process
// holds a shared lock on it, so no other process rebuilds or collects it.
type Image struct {
	Dir    string // CacheDir/<hash>
	Root   string // Dir/root
	Recipe Recipe
	Built  time.Duration // build time when this call built it, else 0
}

// stamp is written last into a finished build.
type stamp struct {
	Recipe  Recipe    `json:"recipe"`
	BuiltAt time.Time `json:"builtAt"`
	BuildS  float64   `json:"buildSeconds"`
}

// imageStore builds and validates roots; build and check are swapped out by
// the cache tests, which need no debootstrap.
type imageStore struct {
	dir   string
	build func(ctx context.Context, r Recipe, root string, logf func(string, ...any)) error
	check func(r Recipe, root string) error
	now   func() time.Time
}

func defaultStore() *imageStore {
	return &imageStore{dir: CacheDir, build: debootstrap, check: checkRoot, now: time.Now}
}

// acquire returns a valid image for r, building it when the cache is missing,
// broken, stale or for another recipe, and a release func for its shared lock.
func (s *imageStore) acquire(ctx context.Context, r Recipe, logf func(string, ...any)) (*Image, func(), error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, nil, err
	}
	h := r.Hash()
	img := &Image{Dir: filepath.Join(s.dir, h), Root: filepath.Join(s.dir, h, "root"), Recipe: r}
	lock, err := os.OpenFile(filepath.Join(s.dir, h+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, err
	}
	release := func() { lock.Close() }
	fail := func(err error) (*Image, func(), error) { release(); return nil, nil, err }

	if err := flock(ctx, lock, unix.LOCK_SH); err != nil {
		return fail(err)
	}
	if s.validate(img) == nil {
		return img, s.hold(img.Dir, release), nil
	}
	if err := s.heldHere(img.Dir); err != nil {
		return fail(err)
	}
	// Rebuild under the exclusive lock: it waits for every container that
	// still uses a root of this hash, and for a concurrent builder.
	if err := flock(ctx, lock, unix.LOCK_EX); err != nil {
		return fail(fmt.Errorf("waiting for the image lock %s.lock: %w", img.Dir, err))
	}
	if err := s.validate(img); err != nil {
		logf("realhost: image %s: %v; building it", img.Dir, err)
		start := s.now()
		if err := s.rebuild(ctx, img, logf); err != nil {
			return fail(err)
		}
		img.Built = s.now().Sub(start)
		logf("realhost: built %s in %.1fs", img.Dir, img.Built.Seconds())
		s.collect(h, logf)
		pruneDebs(filepath.Join(s.dir, "debs"), s.now().Add(-maxImageAge))
	}
	if err := flock(ctx, lock, unix.LOCK_SH); err != nil { // downgrade
		return fail(err)
	}
	return img, s.hold(img.Dir, release), nil
}

// inUse counts this process's holders of each image: a rebuild waits for
// every shared lock, and its own would make it wait forever.
var inUse = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

func (s *imageStore) hold(dir string, release func()) func() {
	inUse.Lock()
	inUse.n[dir]++
	inUse.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			inUse.Lock()
			inUse.n[dir]--
			inUse.Unlock()
			release()
		})
	}
}

func (s *imageStore) heldHere(dir string) error {
	inUse.Lock()
	defer inUse.Unlock()
	if n := inUse.n[dir]; n > 0 {
		return fmt.Errorf("the cached image %s fails its check while %d container(s) of this process run on it; "+
			"it is rebuilt once they are closed", dir, n)
	}
	return nil
}

// validate trusts nothing a crashed or older build may have left.
func (s *imageStore) validate(img *Image) error {
	b, err := os.ReadFile(filepath.Join(img.Dir, "stamp.json"))
	if err != nil {
		return fmt.Errorf("no finished build (stamp.json: %w)", err)
	}
	var st stamp
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("stamp.json unreadable: %w", err)
	}
	a, _ := json.Marshal(st.Recipe)
	want, _ := json.Marshal(img.Recipe)
	if string(a) != string(want) {
		return fmt.Errorf("stamp.json is for another recipe")
	}
	if age := s.now().Sub(st.BuiltAt); age > maxImageAge || age < -time.Hour {
		return fmt.Errorf("stale: built %s", st.BuiltAt.Format(time.RFC3339))
	}
	return s.check(img.Recipe, img.Root)
}

func (s *imageStore) rebuild(ctx context.Context, img *Image, logf func(string, ...any)) error {
	tmp := img.Dir + ".build"
	for _, d := range []string{tmp, img.Dir} {
		if err := safeRemoveAll(d); err != nil {
			return fmt.Errorf("removing the old image: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(tmp, "root"), 0o755); err != nil {
		return err
	}
	start := s.now()
	if err := s.build(ctx, img.Recipe, filepath.Join(tmp, "root"), logf); err != nil {
		_ = safeRemoveAll(tmp)
		return err
	}
	if err := s.check(img.Recipe, filepath.Join(tmp, "root")); err != nil {
		_ = safeRemoveAll(tmp)
		return fmt.Errorf("the fresh build fails its own check: %w", err)
	}
	st, _ := json.MarshalIndent(stamp{Recipe: img.Recipe, BuiltAt: s.now().UTC(), BuildS: s.now().Sub(start).Seconds()}, "", "  ")
	if err := writeFileSync(filepath.Join(tmp, "stamp.json"), st, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, img.Dir)
}

// collect removes roots of other recipes that no process uses.
func (s *imageStore) collect(keep string, logf func(string, ...any)) {
	locks, _ := filepath.Glob(filepath.Join(s.dir, "*.lock"))
	for _, l := range locks {
		h := strings.TrimSuffix(filepath.Base(l), ".lock")
		if h == keep {
			continue
		}
		f, err := os.OpenFile(l, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			if err := safeRemoveAll(filepath.Join(s.dir, h)); err == nil {
				_ = safeRemoveAll(filepath.Join(s.dir, h+".build"))
				os.Remove(l)
				logf("realhost: removed the unused image %s", h)
			}
		}
		f.Close()
	}
}

// pruneDebs drops downloads older than any image still trusted, so the
// package cache does not grow with every point release.
func pruneDebs(dir string, before time.Time) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".deb") && fi.ModTime().Before(before) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// checkRoot is the quick sanity check of a root: the files a boot needs and
// every included package installed according to the root's own dpkg.
func checkRoot(r Recipe, root string) error {
	for _, p := range []string{
		"usr/lib/systemd/systemd", "usr/sbin/sshd", "usr/bin/sudo", "usr/bin/curl", "usr/sbin/ip",
		"etc/sudoers.d/90-cloud-init-users", "home/" + r.User + "/.ssh",
	} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			return fmt.Errorf("broken root: %w", err)
		}
	}
	osr, err := os.ReadFile(filepath.Join(root, "etc/os-release"))
	if err != nil || !strings.Contains(string(osr), "VERSION_CODENAME="+r.Suite) {
		return fmt.Errorf("broken root: etc/os-release is not %s", r.Suite)
	}
	if !strings.Contains(readString(filepath.Join(root, "etc/passwd")), "\n"+r.User+":") {
		return fmt.Errorf("broken root: no user %s in etc/passwd", r.User)
	}
	if hostKeys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*")); len(hostKeys) > 0 {
		return fmt.Errorf("broken root: shared SSH host keys left in etc/ssh")
	}
	args := append([]string{"--admindir=" + filepath.Join(root, "var/lib/dpkg"), "-W", "-f", "${Package} ${db:Status-Abbrev}\n"}, r.Include...)
	out, err := exec.Command("dpkg-query", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("broken root: dpkg-query: %v: %s", err, strings.TrimSpace(string(out)))
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) != 2 || f[1] != "ii" {
			return fmt.Errorf("broken root: package not installed: %q", line)
		}
	}
	return nil
}

// debootstrap builds the root and makes it a host like an EC2 instance's:
// a login user with sudo, no shared SSH host keys, no machine id.
func debootstrap(ctx context.Context, r Recipe, root string, logf func(string, ...any)) error {
	debs := filepath.Join(CacheDir, "debs") // reused by a rebuild: no second download
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	logf("realhost: debootstrap %s (%s) from %s into %s: about 75 s once per machine", r.Suite, r.Variant, r.Mirror, root)
	out, err := exec.CommandContext(ctx, "debootstrap", "--variant="+r.Variant, "--arch="+r.Arch,
		"--include="+strings.Join(r.Include, ","), "--cache-dir="+debs, r.Suite, root, r.Mirror).CombinedOutput()
	if err != nil {
		return fmt.Errorf("debootstrap %s from %s: %v\n%s\n(check the mirror, or set %s)", r.Suite, r.Mirror, err, tail(string(out), 30), MirrorEnv)
	}
	script := `set -e
useradd -m -s /bin/bash -G adm,sudo ` + r.User + `
install -d -m 700 -o ` + r.User + ` -g ` + r.User + ` /home/` + r.User + `/.ssh
echo '` + r.User + ` ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-cloud-init-users
chmod 440 /etc/sudoers.d/90-cloud-init-users
visudo -c >/dev/null
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
mkdir -p /var/log/journal
rm -f /etc/hostname
apt-get clean
`
	out, err = exec.CommandContext(ctx, "chroot", root, "/bin/sh", "-c", script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("customizing the root: %v\n%s", err, out)
	}
	return nil
}

func flock(ctx context.Context, f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("flock %s: %w", f.Name(), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func writeFileSync(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return "\n" + string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
