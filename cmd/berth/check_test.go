package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/gc"
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/disk"
)

// TestCheckCommand runs berth check over a data directory as serve leaves
// it (disk storage, SQLite at <data>/berth.db).
func TestCheckCommand(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	d, err := disk.New(data, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := storage.NewStore(d)
	db, err := metadata.Open(ctx, metadata.Options{SQLitePath: filepath.Join(data, "berth.db")})
	if err != nil {
		t.Fatal(err)
	}
	put := func(content string, linked bool) string {
		dg := oci.FromBytes([]byte(content))
		if _, err := store.PutBlob(ctx, "u", dg, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		if linked {
			if err := db.InTx(ctx, func(tx *metadata.Tx) error { return tx.LinkBlob(ctx, "app", dg, int64(len(content))) }); err != nil {
				t.Fatal(err)
			}
		}
		return filepath.Join(data, filepath.FromSlash(storage.BlobKey(dg)))
	}
	kept, lost := put("kept", true), put("lost", true)
	orphan := put("orphan", false)
	db.Close()

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := check(append([]string{"--data", data}, args...), &out, &out)
		return out.String(), err
	}
	checkProgressEvery = 0 // a progress line per step
	out, err := run()
	checkProgressEvery = 5 * time.Second
	if err != nil || !strings.Contains(out, "Checked 2 blobs, 3 blob objects") || !strings.Contains(out, "younger than --grace 1h0m0s") ||
		!strings.Contains(out, "check: 2 blobs, 3 objects checked") {
		t.Fatalf("a sound registry: %v\n%s", err, out)
	}
	// Only the command line asks for a repair.
	t.Setenv("BERTH_REPAIR", "true")
	out, err = run("--grace", "0s")
	if _, serr := os.Stat(orphan); err != nil || serr != nil || !strings.Contains(out, "--repair deletes the orphans") {
		t.Fatalf("an orphan, no --repair: %v, %v\n%s", err, serr, out)
	}

	os.Remove(lost)
	out, err = run("--repair", "--grace", "0s", "--gc.link-deadline", "1ms")
	if !errors.Is(err, errDamaged) || !strings.Contains(out, "missing: 1 (4 bytes)") || !strings.Contains(out, "orphan blobs: 1 (6 bytes)") {
		t.Fatalf("a lost blob and an orphan: %v\n%s", err, out)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Error("--repair kept the orphan")
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("--repair touched a recorded blob: %v", err)
	}

	out, err = run("--json", "--rehash")
	var rep gc.CheckReport
	if !errors.Is(err, errDamaged) || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Missing) != 1 || len(rep.Orphans) != 0 {
		t.Fatalf("--json: %v\n%s", err, out)
	}

	// A database that is not there is an error, not an empty registry.
	if _, err := run("--database", filepath.Join(data, "typo.db"), "--repair"); err == nil {
		t.Fatal("checking against a missing database succeeded")
	}
	if _, err := os.Stat(kept); err != nil {
		t.Fatal(err)
	}
}
