package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/examples"
)

func (a *app) initCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init DIR",
		Short: "Scaffold a working campaign folder (file provider: writes an outbox)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.runInit(argv[0])
		},
	}
}

func (a *app) runInit(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := []string{"campaign.yaml", "template.html", "template.txt", "subscribers.csv"}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return &usageError{err: fmt.Errorf("init: %s already exists; choose an empty folder", filepath.Join(dir, n))}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for _, n := range names {
		data, err := examples.Quickstart.ReadFile("quickstart/" + n)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o644); err != nil {
			return err
		}
	}
	cf := filepath.Join(dir, "campaign.yaml")
	a.infof("created %s (campaign.yaml, template.html, template.txt, subscribers.csv)", dir)
	a.infof("next: herald validate %s && herald preview %s --limit 1 && herald send %s", cf, cf, cf)
	return nil
}
