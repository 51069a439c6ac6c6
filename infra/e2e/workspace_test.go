package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// standinRS is the one stand-in every AgentKeys service binary runs: std
// only (the build is offline), it listens on the service's *_LISTEN address,
// answers /healthz, and for the broker serves OIDC discovery (issuer from
// BROKER_OIDC_ISSUER) and the JWKS with the public half of the JWK the
// secrets step minted at BROKER_OIDC_KEYPAIR_PATH.
const standinRS = `use std::env;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

const LISTEN_VARS: [&str; 4] = ["BROKER_LISTEN", "SIGNER_LISTEN", "MOCK_SERVER_LISTEN", "WORKER_LISTEN"];

pub fn run(name: &str, broker: bool) {
    let addr = LISTEN_VARS
        .iter()
        .find_map(|k| env::var(k).ok())
        .unwrap_or_else(|| panic!("{}: none of {:?} is set", name, LISTEN_VARS));
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("{}: bind {}: {}", name, addr, e));
    for stream in listener.incoming() {
        let mut s = match stream {
            Ok(s) => s,
            Err(_) => continue,
        };
        let mut r = match s.try_clone() {
            Ok(c) => BufReader::new(c),
            Err(_) => continue,
        };
        let mut first = String::new();
        if r.read_line(&mut first).is_err() {
            continue;
        }
        loop {
            let mut h = String::new();
            match r.read_line(&mut h) {
                Ok(0) | Err(_) => break,
                Ok(_) if h == "\r\n" || h == "\n" => break,
                Ok(_) => {}
            }
        }
        let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (code, body) = route(name, broker, &path);
        let _ = write!(
            s,
            "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            code,
            body.len(),
            body
        );
    }
}

fn route(name: &str, broker: bool, path: &str) -> (&'static str, String) {
    match path {
        "/healthz" => ("200 OK", format!("{{\"ok\":true,\"service\":\"{}\"}}", name)),
        "/.well-known/openid-configuration" if broker => {
            let iss = env::var("BROKER_OIDC_ISSUER").unwrap_or_default();
            ("200 OK", format!(
                "{{\"issuer\":\"{0}\",\"jwks_uri\":\"{0}/.well-known/jwks.json\",\"id_token_signing_alg_values_supported\":[\"ES256\"]}}",
                iss
            ))
        }
        "/.well-known/jwks.json" if broker => match jwks() {
            Ok(b) => ("200 OK", b),
            Err(e) => ("503 Service Unavailable", format!("{{\"error\":\"{}\"}}", e.replace('"', "'"))),
        },
        _ => ("404 Not Found", "{}".to_string()),
    }
}

// The keypair file is a private JWK; publish everything but "d".
fn jwks() -> Result<String, String> {
    let mut p = env::var("BROKER_OIDC_KEYPAIR_PATH").map_err(|_| "BROKER_OIDC_KEYPAIR_PATH is not set".to_string())?;
    if let Ok(root) = env::var("AGENTKEYS_SANDBOX_ROOT") {
        p = format!("{}{}", root, p);
    }
    let doc = std::fs::read_to_string(&p).map_err(|e| format!("{}: {}", p, e))?;
    let mut parts = Vec::new();
    for k in ["kty", "crv", "x", "y", "kid", "alg", "use"] {
        let v = field(&doc, k).ok_or_else(|| format!("{}: no {}", p, k))?;
        parts.push(format!("\"{}\":\"{}\"", k, v));
    }
    Ok(format!("{{\"keys\":[{{{}}}]}}", parts.join(",")))
}

fn field(doc: &str, key: &str) -> Option<String> {
    let pat = format!("\"{}\"", key);
    let mut rest = doc;
    while let Some(i) = rest.find(&pat) {
        rest = &rest[i + pat.len()..];
        if let Some(v) = rest.trim_start().strip_prefix(':') {
            if let Some(v) = v.trim_start().strip_prefix('"') {
                if let Some(end) = v.find('"') {
                    return Some(v[..end].to_string());
                }
            }
        }
    }
    None
}
`

// writeWorkspace writes a cargo workspace with one binary package per
// service of s (package names and features from the spec), a Cargo.lock and
// a .gitignore, into dir.
func writeWorkspace(t *testing.T, dir string, s *spec.HostSpec) {
	t.Helper()
	members := []string{`"standin"`}
	wf := func(p, b string) { write(t, filepath.Join(dir, p), b, 0o644) }
	wf("standin/Cargo.toml", "[package]\nname = \"standin\"\nversion = \"0.1.0\"\nedition = \"2021\"\n")
	wf("standin/src/lib.rs", standinRS)
	for _, svc := range s.Services {
		members = append(members, `"`+svc.Package+`"`)
		toml := "[package]\nname = \"" + svc.Package + "\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nstandin = { path = \"../standin\" }\n"
		main := "fn main() {\n    standin::run(env!(\"CARGO_PKG_NAME\"), false);\n}\n"
		if len(svc.Features) > 0 {
			toml += "\n[features]\n"
			for _, f := range svc.Features {
				toml += f + " = []\n"
			}
		}
		if svc.Name == "broker" {
			// Built without the feature the spec asks for, it refuses to
			// start: the health step then proves the build command's flags.
			main = "fn main() {\n    if !cfg!(feature = \"auth-email-link\") {\n        eprintln!(\"built without auth-email-link\");\n        std::process::exit(3);\n    }\n    standin::run(env!(\"CARGO_PKG_NAME\"), true);\n}\n"
		}
		wf(svc.Package+"/Cargo.toml", toml)
		wf(svc.Package+"/src/main.rs", main)
	}
	wf("Cargo.toml", "[workspace]\nresolver = \"2\"\nmembers = ["+strings.Join(members, ", ")+"]\n")
	wf(".gitignore", "/target\n")
	// A version-3 lock file by hand: every cargo since 1.53 reads it, so the
	// checkout stays clean whichever cargo the agent finds under sudo.
	pkgs := []string{"standin"}
	for _, svc := range s.Services {
		pkgs = append(pkgs, svc.Package)
	}
	sort.Strings(pkgs)
	lock := "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 3\n"
	for _, p := range pkgs {
		lock += "\n[[package]]\nname = \"" + p + "\"\nversion = \"0.1.0\"\n"
		if p != "standin" {
			lock += "dependencies = [\n \"standin\",\n]\n"
		}
	}
	wf("Cargo.lock", lock)
}

// newRepo creates an empty bare repository and returns its path; its
// file:// URL is the stack's agentkeysRepo.
func newRepo(t *testing.T) string {
	t.Helper()
	bare := filepath.Join(t.TempDir(), "agentKeys.git")
	git(t, filepath.Dir(bare), "init", "-q", "--bare", "-b", "main", bare)
	return bare
}

// pushWorkspace commits the stand-in workspace for the services of s to main.
func pushWorkspace(t *testing.T, bare string, s *spec.HostSpec) {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	git(t, filepath.Dir(work), "init", "-q", "-b", "main", work)
	writeWorkspace(t, work, s)
	git(t, work, "add", "-A")
	git(t, work, "commit", "-q", "-m", "stand-in services")
	git(t, work, "push", "-q", bare, "HEAD:main")
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}
