package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/berthhq/berth/gc"
)

// errDamaged ends berth check with status 1.
var errDamaged = errors.New("check: blobs are missing or damaged")

// checkListed is how many findings of each kind the human report lists.
const checkListed = 20

// checkProgressEvery is how often berth check reports progress on stderr.
var checkProgressEvery = 5 * time.Second

// check runs `berth check`: it compares the metadata database with storage,
// as serve's options name them, and prints a report. It returns errDamaged
// when blobs are missing, mis-sized or corrupt; orphans alone are no error.
func check(args []string, stdout, stderr io.Writer) error {
	var o gc.CheckOptions
	var asJSON bool
	c, err := loadConfig("check", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&o.Rehash, "rehash", false, "read every blob and verify that it hashes to its digest")
		fs.BoolVar(&o.Repair, "repair", false, "delete orphans older than --grace (bytes with no metadata; nothing recorded is touched)")
		fs.DurationVar(&o.Grace, "grace", time.Hour, "how old an orphan must be to count (younger ones may be pushes in flight)")
		fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	})
	if err != nil {
		return err
	}
	o.LinkDeadline = c.GCLinkDeadline
	if o.Grace < 0 {
		return errors.New("--grace must not be negative")
	}
	if !c.isPostgres() {
		// Opening a missing SQLite file would create an empty database.
		if _, err := os.Stat(c.Database); err != nil {
			return fmt.Errorf("database %s: %w (berth check never creates one)", c.Database, errors.Unwrap(err))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	store, err := openStore(ctx, c, nil)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, c, nil)
	if err != nil {
		return err
	}
	defer db.Close()

	start := time.Now()
	last := start
	o.Progress = func(p gc.CheckProgress) {
		if time.Since(last) >= checkProgressEvery {
			last = time.Now()
			fmt.Fprintf(stderr, "check: %d blobs, %d objects checked (%s)\n", p.Blobs, p.Objects, time.Since(start).Round(time.Second))
		}
	}
	rep, err := gc.Check(ctx, db, store, o)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printCheck(stdout, &rep, o, time.Since(start))
	}
	if rep.Damaged() {
		return errDamaged
	}
	return nil
}

// printCheck writes the human report: counts, then the first findings of each kind.
func printCheck(w io.Writer, rep *gc.CheckReport, o gc.CheckOptions, took time.Duration) {
	fmt.Fprintf(w, "Checked %d blobs, %d blob objects and %d upload objects in %s.\n",
		rep.Blobs, rep.Objects, rep.Uploads, took.Round(time.Millisecond))
	section := func(title string, fs []gc.Finding, line func(gc.Finding) string) {
		var bytes int64
		for _, f := range fs {
			bytes += f.Size
		}
		fmt.Fprintf(w, "%s: %d (%d bytes)\n", title, len(fs), bytes)
		for i, f := range fs {
			if i == checkListed {
				fmt.Fprintf(w, "  … and %d more (--json lists them all)\n", len(fs)-i)
				break
			}
			fmt.Fprintf(w, "  %s\n", line(f))
		}
	}
	plain := func(f gc.Finding) string { return fmt.Sprintf("%s  %d bytes", f.Key, f.Size) }
	orphan := func(f gc.Finding) string {
		s := fmt.Sprintf("%s  %d bytes, written %s", f.Key, f.Size, f.ModTime.UTC().Format(time.RFC3339))
		if f.Repaired {
			s += ", deleted"
		}
		return s
	}
	section("missing", rep.Missing, plain)
	section("size mismatch", rep.SizeMismatch, func(f gc.Finding) string {
		return fmt.Sprintf("%s  recorded %d bytes, stored %d", f.Key, f.Size, f.Stored)
	})
	if o.Rehash {
		section("corrupt", rep.Corrupt, plain)
	} else {
		fmt.Fprintln(w, "corrupt: not checked (--rehash reads every blob)")
	}
	section("orphan blobs", rep.Orphans, orphan)
	section("orphan uploads", rep.OrphanUploads, orphan)
	if len(rep.Stray) > 0 {
		section("stray keys under blobs/ (left alone)", rep.Stray, plain)
	}
	if rep.Young > 0 {
		fmt.Fprintf(w, "%d objects without metadata are younger than --grace %s and were left alone.\n", rep.Young, o.Grace)
	}
	if !o.Repair && len(rep.Orphans)+len(rep.OrphanUploads) > 0 {
		fmt.Fprintln(w, "--repair deletes the orphans.")
	}
}
