package smtp

import (
	"fmt"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/heraldmail/herald/providers"
)

// signedHeaders lists the header fields the DKIM signature covers, when present (and,
// listed once more than present, protected against being added): the ones mailbox
// providers look at, including the one-click unsubscribe pair they require signed.
func signedHeaders() []string {
	return []string{
		"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "MIME-Version",
		"Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
		"List-Id", "Precedence", "Feedback-ID",
	}
}

// sign returns the DKIM-Signature header field (with its CRLF) for raw, to be sent in
// front of it. Relaxed canonicalisation survives the header rewrapping relays do.
func (p *Provider) sign(raw []byte) ([]byte, error) {
	s, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 p.cfg.DKIM.Domain,
		Selector:               p.cfg.DKIM.Selector,
		Signer:                 p.dkim,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             signedHeaders(),
	})
	if err != nil {
		return nil, &providers.Error{Provider: Kind, Kind: providers.Fatal, Message: fmt.Sprintf("dkim: %v", err), Err: err}
	}
	if _, err := s.Write(raw); err != nil {
		s.Close()
		return nil, &providers.Error{Provider: Kind, Kind: providers.Permanent, Message: fmt.Sprintf("dkim: cannot sign the message: %v", err), Err: err}
	}
	if err := s.Close(); err != nil {
		return nil, &providers.Error{Provider: Kind, Kind: providers.Permanent, Message: fmt.Sprintf("dkim: cannot sign the message: %v", err), Err: err}
	}
	return []byte(s.Signature()), nil
}
