// Package examples holds herald's example campaigns; `herald init` copies the quickstart.
package examples

import "embed"

// Quickstart is the campaign `herald init` scaffolds (folder "quickstart").
//
//go:embed quickstart/campaign.yaml quickstart/template.html quickstart/template.txt quickstart/subscribers.csv
var Quickstart embed.FS
