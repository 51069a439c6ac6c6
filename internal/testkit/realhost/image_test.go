package realhost

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeStore is an imageStore whose build writes one marker file and whose
// check wants it: the cache logic runs for real on real files and locks.
func fakeStore(t *testing.T) (*imageStore, *atomic.Int32) {
	var builds atomic.Int32
	s := &imageStore{
		dir: t.TempDir(),
		now: time.Now,
		build: func(ctx context.Context, r Recipe, root string, logf func(string, ...any)) error {
			builds.Add(1)
			time.Sleep(50 * time.Millisecond) // long enough for a concurrent caller to arrive
			return os.WriteFile(filepath.Join(root, "marker"), []byte(r.Suite), 0o644)
		},
		check: func(r Recipe, root string) error {
			b, err := os.ReadFile(filepath.Join(root, "marker"))
			if err != nil {
				return err
			}
			if string(b) != r.Suite {
				return errors.New("marker for another suite")
			}
			return nil
		},
	}
	return s, &builds
}

var testRecipe = Recipe{Version: 1, Suite: "bookworm", Variant: "minbase", Include: []string{"systemd"}, Mirror: "http://m/debian", Arch: "amd64", User: "ubuntu"}

func acquireOK(t *testing.T, s *imageStore, r Recipe) *Image {
	t.Helper()
	img, release, err := s.acquire(context.Background(), r, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	release()
	return img
}

func TestImageCacheBuildsOnceAndReuses(t *testing.T) {
	s, builds := fakeStore(t)
	img := acquireOK(t, s, testRecipe)
	acquireOK(t, s, testRecipe)
	if n := builds.Load(); n != 1 {
		t.Fatalf("built %d times, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(img.Dir, "stamp.json")); err != nil {
		t.Fatal("no stamp after a build")
	}
	if _, err := os.Stat(img.Dir + ".build"); err == nil {
		t.Fatal("the build folder is left over")
	}
}

func TestImageCacheRebuildsWhatItCannotTrust(t *testing.T) {
	cases := map[string]func(img *Image){
		"stamp missing (build killed before its end)": func(img *Image) { os.Remove(filepath.Join(img.Dir, "stamp.json")) },
		"stamp garbled": func(img *Image) { os.WriteFile(filepath.Join(img.Dir, "stamp.json"), []byte("{"), 0o644) },
		"root damaged":  func(img *Image) { os.Remove(filepath.Join(img.Root, "marker")) },
		"stamp of another recipe": func(img *Image) {
			other := testRecipe
			other.Include = append([]string{"nginx"}, other.Include...)
			b, _ := json.Marshal(stamp{Recipe: other, BuiltAt: time.Now()})
			os.WriteFile(filepath.Join(img.Dir, "stamp.json"), b, 0o644)
		},
		"stale": func(img *Image) {
			b, _ := json.Marshal(stamp{Recipe: testRecipe, BuiltAt: time.Now().Add(-maxImageAge - time.Hour)})
			os.WriteFile(filepath.Join(img.Dir, "stamp.json"), b, 0o644)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			s, builds := fakeStore(t)
			img := acquireOK(t, s, testRecipe)
			damage(img)
			acquireOK(t, s, testRecipe)
			if n := builds.Load(); n != 2 {
				t.Fatalf("built %d times, want a rebuild (2)", n)
			}
			if err := s.validate(img); err != nil {
				t.Fatalf("after the rebuild: %v", err)
			}
		})
	}
}

func TestImageCacheLeftoverBuildIsDiscarded(t *testing.T) {
	s, builds := fakeStore(t)
	h := testRecipe.Hash()
	// A build killed mid-way: a half root with no stamp.
	os.MkdirAll(filepath.Join(s.dir, h+".build", "root", "junk"), 0o755)
	img := acquireOK(t, s, testRecipe)
	if builds.Load() != 1 {
		t.Fatal("no build")
	}
	if _, err := os.Stat(filepath.Join(img.Root, "junk")); err == nil {
		t.Fatal("the killed build's files were trusted")
	}
}

func TestImageCacheConcurrentCallersBuildOnce(t *testing.T) {
	s, builds := fakeStore(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, release, err := s.acquire(context.Background(), testRecipe, t.Logf)
			if err == nil {
				release()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := builds.Load(); n != 1 {
		t.Fatalf("4 concurrent callers built %d times, want 1", n)
	}
}

func TestImageCacheCollectsUnusedRecipes(t *testing.T) {
	s, _ := fakeStore(t)
	old := testRecipe
	old.Version = 0
	oldImg := acquireOK(t, s, old)
	// A container still uses another old image: it must survive.
	inUse := testRecipe
	inUse.Suite = "trixie"
	inUseImg, release, err := s.acquire(context.Background(), inUse, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	acquireOK(t, s, testRecipe)
	if _, err := os.Stat(oldImg.Dir); err == nil {
		t.Fatal("the unused image of an older recipe is still there")
	}
	if _, err := os.Stat(inUseImg.Root); err != nil {
		t.Fatal("an image in use was collected")
	}
}

func TestSafeRemoveAllNeverDeletesThroughAMount(t *testing.T) {
	Require(t)
	// A build killed mid-way leaves the host's /dev bind-mounted in a root:
	// removing the root must not remove what is behind the mount.
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "precious"), []byte("x"), 0o644)
	dir := t.TempDir()
	mp := filepath.Join(dir, "root", "dev")
	os.MkdirAll(mp, 0o755)
	if err := mountBind(host, mp); err != nil {
		t.Fatal(err)
	}
	if got := mountsUnder(dir); len(got) != 1 || got[0] != mp {
		t.Fatalf("mountsUnder = %v, want [%s]", got, mp)
	}
	if err := safeRemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("not removed")
	}
	if _, err := os.Stat(filepath.Join(host, "precious")); err != nil {
		t.Fatal("a file behind the mount was deleted")
	}
}

func TestMirrorFromAptSources(t *testing.T) {
	deb822 := `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`
	var got []string
	for _, s := range parseDeb822(deb822) {
		if m := s.debianMirror(); m != "" {
			got = append(got, m)
		}
	}
	if strings.Join(got, ",") != "http://deb.debian.org/debian" {
		t.Fatalf("deb822 mirrors = %v", got)
	}
	oneLine := `# comment
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://security.debian.org/debian-security bookworm-security main
deb [arch=amd64] http://mirror.example/debian/ bookworm main contrib
`
	got = nil
	for _, s := range parseOneLine(oneLine) {
		if m := s.debianMirror(); m != "" {
			got = append(got, m)
		}
	}
	if strings.Join(got, ",") != "http://mirror.example/debian" {
		t.Fatalf("one-line mirrors = %v", got)
	}
	disabled := "Enabled: no\nTypes: deb\nURIs: http://x/debian\nSuites: bookworm\nComponents: main\n"
	for _, s := range parseDeb822(disabled) {
		if s.debianMirror() != "" {
			t.Fatal("a disabled source was used")
		}
	}
	t.Setenv(MirrorEnv, "http://override.example/debian/")
	if m, _ := Mirror(); m != "http://override.example/debian" {
		t.Fatalf("override: %s", m)
	}
}

func TestSubnetPoolNeverTouchesRegistryNet(t *testing.T) {
	for n := 0; n < maxSlots; n++ {
		p := slotNet(n)
		if p.Overlaps(forbidden) || p.Bits() != 24 || !(p.Addr().As4()[0] == 198 && (p.Addr().As4()[1] == 18 || p.Addr().As4()[1] == 19)) {
			t.Fatalf("slot %d: %s", n, p)
		}
		if n > 0 && slotNet(n-1) == p {
			t.Fatalf("slots %d and %d share %s", n-1, n, p)
		}
	}
	if len(slotNames(511).Veth) > 15 {
		t.Fatal("veth name longer than IFNAMSIZ")
	}
}

// recTB records what Require does instead of stopping the goroutine.
type recTB struct {
	testing.TB
	fatal, skip string
}

func (r *recTB) Helper()                   {}
func (r *recTB) Fatalf(f string, a ...any) { r.fatal = f }
func (r *recTB) Skipf(f string, a ...any)  { r.skip = f }

func TestRequireFailsUnderE2EAndSkipsOtherwise(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no systemd-nspawn, debootstrap, nft
	if err := Available(); err == nil || !strings.Contains(err.Error(), "systemd-nspawn") || !strings.Contains(err.Error(), "realhost.sh") {
		t.Fatalf("Available() = %v, want the missing tools and the fix", err)
	}
	t.Setenv("AGENTKEYS_E2E", "1")
	r := &recTB{TB: t}
	Require(r)
	if r.fatal == "" || r.skip != "" {
		t.Fatalf("AGENTKEYS_E2E=1: fatal %q skip %q, want a failure", r.fatal, r.skip)
	}
	t.Setenv("AGENTKEYS_E2E", "")
	r = &recTB{TB: t}
	Require(r)
	if r.skip == "" || r.fatal != "" {
		t.Fatalf("without AGENTKEYS_E2E: fatal %q skip %q, want a skip", r.fatal, r.skip)
	}
}

func TestImageCacheBrokenWhileInUseHereFailsFast(t *testing.T) {
	s, _ := fakeStore(t)
	img, release, err := s.acquire(context.Background(), testRecipe, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	os.Remove(filepath.Join(img.Root, "marker"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := s.acquire(ctx, testRecipe, t.Logf); err == nil || !strings.Contains(err.Error(), "container(s) of this process") {
		t.Fatalf("acquire = %v, want a fast error naming the containers that hold the image", err)
	}
	release()
	acquireOK(t, s, testRecipe) // rebuilt once released
}
