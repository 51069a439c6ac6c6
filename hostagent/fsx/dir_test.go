package fsx

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type killed struct{}

// killAt makes the n-th fault point reached (counting every point) stop
// the write like a kill: nothing after it runs.
func killAt(t *testing.T, n int) *[]string {
	var seen []string
	FaultHook = func(p string) {
		seen = append(seen, p)
		if len(seen) == n {
			panic(killed{})
		}
	}
	t.Cleanup(func() { FaultHook = nil })
	return &seen
}

func runKilled(f func() error) (wasKilled bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(killed); !ok {
				panic(r)
			}
			wasKilled = true
		}
	}()
	return false, f()
}

func set(gen string) []File {
	return []File{{"privkey.pem", []byte("key-" + gen), 0o600}, {"fullchain.pem", []byte("chain-" + gen), 0o644}, {"meta.json", []byte(gen), 0o644}}
}

// gen returns the generation the directory's files belong to, "mixed" when
// they disagree, "" when the directory is absent.
func gen(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return ""
	}
	k, _ := os.ReadFile(filepath.Join(dir, "privkey.pem"))
	c, _ := os.ReadFile(filepath.Join(dir, "fullchain.pem"))
	m, _ := os.ReadFile(filepath.Join(dir, "meta.json"))
	g := strings.TrimPrefix(string(k), "key-")
	if string(c) != "chain-"+g || string(m) != g || g == "" {
		return "mixed"
	}
	return g
}

// newer accepts a staged set whose three files agree and that is a later
// generation than the current one (after a swap, the staged directory holds
// the previous set).
func newer(t *testing.T) func(string, string) bool {
	return func(c, cur string) bool {
		g := gen(t, c)
		return g != "" && g != "mixed" && (cur == "" || g > gen(t, cur))
	}
}

func TestReplaceDirKilledAtEveryPoint(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		noExchange = fallback
		t.Cleanup(func() { noExchange = false })
		// Count the points of one replacement.
		root := t.TempDir()
		require.NoError(t, ReplaceDir(root, "/tls/h", set("1"), 0o700, NoOwner))
		seen := killAt(t, -1)
		require.NoError(t, ReplaceDir(root, "/tls/h", set("2"), 0o700, NoOwner))
		points := append([]string(nil), *seen...)
		want := 5 // three files, before and after the swap
		if fallback {
			want = 6 // and between moving the old set aside and the new in
		}
		require.Len(t, points, want, "%v", points)

		for n := 1; n <= len(points); n++ {
			root := t.TempDir()
			dir := filepath.Join(root, "tls/h")
			require.NoError(t, ReplaceDir(root, "/tls/h", set("1"), 0o700, NoOwner))
			killAt(t, n)
			k, err := runKilled(func() error { return ReplaceDir(root, "/tls/h", set("2"), 0o700, NoOwner) })
			require.True(t, k, "point %d (%s) not reached: %v", n, points[n-1], err)
			FaultHook = nil
			g := gen(t, dir)
			if fallback && points[n-1] == "replace-dir:moved-aside" {
				assert.Equal(t, "", g, "the fallback's one window: no directory, never a mix")
			} else {
				assert.Contains(t, []string{"1", "2"}, g, "killed at %s", points[n-1])
			}
			_, err = RecoverDir(root, "/tls/h", newer(t))
			require.NoError(t, err)
			after := gen(t, dir)
			// What was complete on disk survives: the new set once every file is written.
			if n >= 3 {
				assert.Equal(t, "2", after, "recovered after a kill at %s (fallback %v)", points[n-1], fallback)
			} else {
				assert.Equal(t, "1", after, "recovered after a kill at %s (fallback %v)", points[n-1], fallback)
			}
			ents, _ := os.ReadDir(filepath.Dir(dir))
			assert.Len(t, ents, 1, "staged directories removed after recovery")
			st, err := os.Stat(filepath.Join(dir, "privkey.pem"))
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
			st, _ = os.Stat(dir)
			assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())
		}
	}
}

func TestRecoverDirKeepsTheCurrentSetWhenTheStagedOneIsRefused(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, ReplaceDir(root, "/tls/h", set("1"), 0o700, NoOwner))
	killAt(t, 2) // after the second file: the staged set is incomplete
	k, _ := runKilled(func() error { return ReplaceDir(root, "/tls/h", set("2"), 0o700, NoOwner) })
	require.True(t, k)
	FaultHook = nil
	changed, err := RecoverDir(root, "/tls/h", newer(t))
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Equal(t, "1", gen(t, filepath.Join(root, "tls/h")))
	assert.NoDirExists(t, filepath.Join(root, "tls/.h.new"))
	changed, err = RecoverDir(root, "/tls/h", newer(t))
	require.NoError(t, err)
	assert.False(t, changed, "nothing left to recover")
}
