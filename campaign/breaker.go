package campaign

import (
	"sync"

	"github.com/heraldmail/herald/providers"
)

// failingAfter is how many identical permanent answers in a row stop a run: a provider
// that answers every recipient the same way (a sender that is not verified, an account
// that may not send) is refusing the campaign, not the recipients.
const failingAfter = 10

// answer identifies a permanent answer: the provider, its codes and its (redacted) text.
type answer struct {
	provider, enhanced, text string
	code                     int
}

func answerOf(err error) answer {
	if pe := providers.AsError(err); pe != nil {
		a := answer{provider: pe.Provider, code: pe.Code, enhanced: pe.Enhanced, text: pe.Message}
		if a.text == "" && pe.Err != nil {
			a.text = pe.Err.Error()
		}
		return a
	}
	return answer{text: err.Error()}
}

// streak is the circuit breaker for campaign-wide rejections. It watches the answers of
// a run in the order they come: a success or a different permanent answer ends a
// streak; temporary and unknown answers leave it as it is. At failingAfter identical
// permanent answers in a row it trips: the run stops, and the recipients of the streak,
// recorded failed meanwhile, return to pending (nobody is marked failed for a fault of
// the campaign). Once tripped, further recipients with the same answer (sends that were
// in flight) are released to pending too. It is safe for concurrent use.
type streak struct {
	mu      sync.Mutex
	last    answer
	members []*Recipient // recorded failed in the current streak
	tripped bool
}

// verdict is what the pipeline does with a permanent answer.
type verdict int

const (
	// recordFailed: an ordinary permanent failure of the recipient.
	recordFailed verdict = iota
	// releaseAndTrip: the answer tripped the breaker: release this recipient, return
	// the others of the streak to pending, stop the run.
	releaseAndTrip
	// release: the breaker has tripped on this answer already: release this recipient.
	release
)

// permanent notes a permanent answer err for rc and calls act with the verdict; with
// releaseAndTrip, reopen lists the recipients of the streak recorded failed before rc.
// act runs under the streak's lock, so that the outcomes it queues are in the order of
// the verdicts (a recipient's failure is queued before the reopen that undoes it).
func (s *streak) permanent(rc *Recipient, err error, act func(v verdict, reopen []*Recipient)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	act(s.judge(rc, err))
}

func (s *streak) judge(rc *Recipient, err error) (v verdict, reopen []*Recipient) {
	a := answerOf(err)
	if s.tripped {
		if a == s.last {
			return release, nil
		}
		return recordFailed, nil
	}
	if len(s.members) == 0 || a != s.last {
		s.last, s.members = a, []*Recipient{rc}
		return recordFailed, nil
	}
	s.members = append(s.members, rc)
	if len(s.members) < failingAfter {
		return recordFailed, nil
	}
	s.tripped = true
	reopen, s.members = s.members[:len(s.members)-1], nil
	return releaseAndTrip, reopen
}

// success notes a delivered message: the streak ends.
func (s *streak) success() {
	s.mu.Lock()
	if !s.tripped {
		s.members = nil
	}
	s.mu.Unlock()
}
