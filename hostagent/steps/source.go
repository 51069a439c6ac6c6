package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

// Source checks out spec.Source.Ref in spec.Source.Dir: it adopts a checkout
// the old scripts left under another home (moving it), or clones; then
// fetches and checks out the ref's commit (detached). It is ok when HEAD is
// already that commit, and refuses to move a checkout with uncommitted changes.
type Source struct{}

func (Source) Name() string { return "source" }

var shaRe = regexp.MustCompile(`^[0-9a-f]{40}$`)

func git(ctx context.Context, env *agent.Env, dir string, args ...string) (string, error) {
	// The checkout belongs to the login user; root must still be allowed in.
	full := append([]string{"-c", "safe.directory=*", "-C", dir}, args...)
	out, err := env.Sys.Run(ctx, "", []string{"GIT_TERMINAL_PROMPT=0"}, "git", full...)
	return strings.TrimSpace(string(out)), err
}

func isRepo(p string) bool {
	_, err := os.Stat(filepath.Join(p, ".git"))
	return err == nil
}

func (Source) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "source"}
	src := env.Spec.Source
	dir := env.Path(src.Dir)
	if !env.DryRun {
		if from, err := finishAdoption(env, dir); err != nil {
			return res, err
		} else if from != "" {
			res.Changes = append(res.Changes, fmt.Sprintf("removed %s, already copied to %s by an interrupted run", from, src.Dir))
		}
	}
	if !isRepo(dir) {
		if _, err := os.Stat(dir); err == nil {
			if ents, _ := os.ReadDir(dir); len(ents) > 0 {
				return res, fmt.Errorf("%s exists but is not a git checkout; move it away so the agent can clone %s there", src.Dir, src.Repo)
			}
		}
		from := ""
		for _, a := range src.AdoptFrom {
			if isRepo(env.Path(a)) {
				from = a
				break
			}
		}
		if env.DryRun {
			if from != "" {
				res.Changes = append(res.Changes, fmt.Sprintf("would adopt %s as %s and check out %s", from, src.Dir, src.Ref))
			} else {
				res.Changes = append(res.Changes, fmt.Sprintf("would clone %s into %s at %s", src.Repo, src.Dir, src.Ref))
			}
			return res, nil
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return res, err
		}
		os.Remove(dir) // an empty placeholder only
		if from != "" {
			copied, err := adopt(env, from, dir)
			if err != nil {
				return res, fmt.Errorf("adopt %s into %s: %w", from, src.Dir, err)
			}
			how := ""
			if copied {
				how = " (copied across filesystems)"
			}
			res.Changes = append(res.Changes, fmt.Sprintf("adopted %s as %s%s", from, src.Dir, how))
		} else {
			// Clone beside the target and rename, so a crash never leaves a half clone at Dir.
			tmp := dir + ".hostagent-clone"
			os.RemoveAll(tmp)
			if _, err := env.Sys.Run(ctx, "", []string{"GIT_TERMINAL_PROMPT=0"}, "git", "clone", "--quiet", src.Repo, tmp); err != nil {
				return res, fmt.Errorf("clone %s: %w", src.Repo, err)
			}
			fsx.Fault("source:after-clone")
			if err := os.Rename(tmp, dir); err != nil {
				return res, err
			}
			res.Changes = append(res.Changes, fmt.Sprintf("cloned %s into %s", src.Repo, src.Dir))
		}
	}

	target, err := resolveRef(ctx, env, dir, src.Ref)
	if err != nil {
		return res, err
	}
	head, _ := git(ctx, env, dir, "rev-parse", "--verify", "-q", "HEAD^{commit}")
	res.Detail = map[string]any{"ref": src.Ref, "commit": target}
	if head == target {
		if len(res.Changes) > 0 {
			return res, chownTree(env, dir)
		}
		return res, nil
	}
	if env.DryRun {
		res.Changes = append(res.Changes, fmt.Sprintf("would check out %s (%s) over %s", src.Ref, short(target), short(head)))
		return res, nil
	}
	if head != "" {
		dirty, err := git(ctx, env, dir, "status", "--porcelain", "--untracked-files=no")
		if err != nil {
			return res, err
		}
		if dirty != "" {
			return res, fmt.Errorf("%s has uncommitted changes; commit or stash them before moving it to %s:\n%s", src.Dir, src.Ref, dirty)
		}
	}
	if _, err := git(ctx, env, dir, "cat-file", "-e", target+"^{commit}"); err != nil {
		if _, err := git(ctx, env, dir, "fetch", "--quiet", "origin", src.Ref); err != nil {
			return res, fmt.Errorf("fetch %s: %w", src.Ref, err)
		}
	}
	if _, err := git(ctx, env, dir, "checkout", "--quiet", "--force", "--detach", target); err != nil {
		return res, err
	}
	res.Changes = append(res.Changes, fmt.Sprintf("checked out %s (%s)", src.Ref, short(target)))
	return res, chownTree(env, dir)
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	if s == "" {
		return "nothing"
	}
	return s
}

// resolveRef finds the commit of ref on origin without changing the checkout:
// a full commit id is taken as is; a branch or tag is looked up with ls-remote.
func resolveRef(ctx context.Context, env *agent.Env, dir, ref string) (string, error) {
	if shaRe.MatchString(ref) {
		return ref, nil
	}
	out, err := git(ctx, env, dir, "ls-remote", "origin", ref, ref+"^{}")
	if err != nil {
		return "", fmt.Errorf("look up %s on origin: %w", ref, err)
	}
	refs := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 {
			refs[f[1]] = f[0]
		}
	}
	for _, name := range []string{"refs/heads/" + ref, "refs/tags/" + ref + "^{}", "refs/tags/" + ref, ref} {
		if c, ok := refs[name]; ok {
			return c, nil
		}
	}
	// An abbreviated commit id the checkout already has.
	if c, err := git(ctx, env, dir, "rev-parse", "--verify", "-q", ref+"^{commit}"); err == nil && c != "" {
		return c, nil
	}
	return "", fmt.Errorf("source.ref %q is not a branch or tag of %s, nor a commit; fix source.ref in the spec", ref, env.Spec.Source.Repo)
}

// chownTree gives the checkout to the login user (git ran as root).
func chownTree(env *agent.Env, dir string) error {
	o, err := env.Owner(env.Spec.LoginUser, "")
	if errors.Is(err, agent.ErrNoUser) || (err == nil && o.UID < 0) {
		return nil
	}
	if err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, o.UID, o.GID)
	})
}
