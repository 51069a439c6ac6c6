package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// Lock is one holder of a stack's Pulumi lock: the DIY backend writes
// .pulumi/locks/<org/project/>stack/<id>.json while an operation runs
// (pulumi pkg/backend/diy/lock.go, lockContent), so a CI job converging or
// testing a slot shows here with its runner's user and host.
type Lock struct {
	Pid       int       `json:"pid"`
	Username  string    `json:"username"`
	Hostname  string    `json:"hostname"`
	Timestamp time.Time `json:"timestamp"`
}

func (l Lock) String() string {
	return fmt.Sprintf("%s@%s pid %d since %s", l.Username, l.Hostname, l.Pid, l.Timestamp.UTC().Format("01-02 15:04Z"))
}

// BackendURL is the backend the pulumi CLI would use, read without side
// effects: PULUMI_BACKEND_URL, else the current login in
// $PULUMI_HOME/credentials.json (default ~/.pulumi).
func BackendURL() string {
	if u := os.Getenv("PULUMI_BACKEND_URL"); u != "" {
		return u
	}
	home := os.Getenv("PULUMI_HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		home = filepath.Join(h, ".pulumi")
	}
	b, err := os.ReadFile(filepath.Join(home, "credentials.json"))
	if err != nil {
		return ""
	}
	var c struct {
		Current string `json:"current"`
	}
	_ = json.Unmarshal(b, &c)
	return c.Current
}

// lockDirs are the two layouts of the DIY backend: project-scoped
// (organization/<project>/<stack>) and the legacy one (<stack>).
func lockDirs(stack string) []string {
	return []string{
		path.Join(".pulumi", "locks", "organization", policy.PulumiProject, stack),
		path.Join(".pulumi", "locks", stack),
	}
}

// Locks reads the stack's lock files from a file:// or s3:// backend.
func (o Options) Locks(ctx context.Context, stack string) ([]Lock, error) {
	u, err := url.Parse(o.Backend)
	if err != nil || o.Backend == "" {
		return nil, fmt.Errorf("no DIY backend (PULUMI_BACKEND_URL or pulumi login)")
	}
	var raws [][]byte
	switch u.Scheme {
	case "file":
		root := u.Path
		if u.Host != "" && u.Host != "localhost" {
			root = u.Host + u.Path // file://relative/dir
		}
		for _, d := range lockDirs(stack) {
			ents, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(d)))
			if err != nil {
				continue
			}
			for _, e := range ents {
				if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
					continue
				}
				b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(d), e.Name()))
				if err == nil {
					raws = append(raws, b)
				}
			}
		}
	case "s3":
		if o.AWS == nil {
			return nil, fmt.Errorf("no AWS access to read %s", o.Backend)
		}
		cfg := o.AWS.Copy()
		if r := u.Query().Get("region"); r != "" {
			cfg.Region = r
		}
		c := s3.NewFromConfig(cfg, awsx.S3Options)
		prefix := strings.TrimPrefix(u.Path, "/")
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		for _, d := range lockDirs(stack) {
			out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(u.Host), Prefix: aws.String(prefix + d + "/")})
			if err != nil {
				return nil, fmt.Errorf("s3://%s: %s", u.Host, shortAWS(err))
			}
			for _, obj := range out.Contents {
				key := aws.ToString(obj.Key)
				if path.Dir(key) != strings.TrimSuffix(prefix+d, "/") || !strings.HasSuffix(key, ".json") {
					continue
				}
				g, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(u.Host), Key: aws.String(key)})
				if err != nil {
					continue // released between list and get
				}
				b, _ := io.ReadAll(g.Body)
				g.Body.Close()
				raws = append(raws, b)
			}
		}
	default:
		return nil, fmt.Errorf("backend %s: locks are read from file:// and s3:// backends only", u.Scheme)
	}
	var locks []Lock
	for _, b := range raws {
		var l Lock
		if json.Unmarshal(b, &l) == nil {
			locks = append(locks, l)
		}
	}
	sort.Slice(locks, func(i, j int) bool { return locks[i].Timestamp.Before(locks[j].Timestamp) })
	return locks, nil
}

// occupancy says who holds the stack now: free, or the lock holders.
func (o Options) occupancy(ctx context.Context, stack string) string {
	if o.Backend == "" {
		return "-"
	}
	locks, err := o.Locks(ctx, stack)
	if err != nil {
		return "? " + firstLine(err.Error())
	}
	if len(locks) == 0 {
		return "free"
	}
	var s []string
	for _, l := range locks {
		s = append(s, l.String())
	}
	return "busy: " + strings.Join(s, "; ")
}

func awsCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// shortAWS is an AWS error without the SDK's operation prefix.
func shortAWS(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode() + ": " + ae.ErrorMessage()
	}
	return firstLine(err.Error())
}
