// Package all wires every provider herald ships into one Registry.
package all

import (
	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/file"
	"github.com/heraldmail/herald/providers/mandrill"
	"github.com/heraldmail/herald/providers/sendgrid"
	"github.com/heraldmail/herald/providers/ses"
	"github.com/heraldmail/herald/providers/smtp"
)

// Registry returns a new registry of every provider kind.
func Registry() providers.Registry {
	r := providers.Registry{}
	for _, reg := range []providers.Registration{
		file.Registration(),
		smtp.Registration(),
		ses.Registration(),
		sendgrid.Registration(),
		mandrill.Registration(),
	} {
		r[reg.Kind] = reg
	}
	return r
}
