package fsx

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadJSON(t *testing.T) {
	root := t.TempDir()
	var v map[string]string
	if found, err := ReadJSON(root, "/state/rec.json", &v); found || err != nil {
		t.Fatalf("absent: found %v err %v", found, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "state/rec.json"), []byte(`{"a":"b"}`), 0o600)
	if found, err := ReadJSON(root, "/state/rec.json", &v); !found || err != nil || v["a"] != "b" {
		t.Fatalf("valid: found %v err %v v %v", found, err, v)
	}
	os.WriteFile(filepath.Join(root, "state/rec.json"), []byte(`{"a":`), 0o600)
	if found, err := ReadJSON(root, "/state/rec.json", &v); !found || err == nil {
		t.Fatalf("broken: found %v err %v", found, err)
	}
	// A directory where the record should be is a read error, not "absent".
	os.Remove(filepath.Join(root, "state/rec.json"))
	os.Mkdir(filepath.Join(root, "state/rec.json"), 0o700)
	if found, err := ReadJSON(root, "/state/rec.json", &v); found || err == nil {
		t.Fatalf("unreadable: found %v err %v", found, err)
	}
}
