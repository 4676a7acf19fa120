package journal

import (
	"context"
	"testing"
)

// TestRecordBounce: a hard bounce turns a sent recipient failed with the DSN's codes and
// suppresses the address; the same bounce again changes nothing; a pending recipient is
// left alone (only suppressed).
func TestRecordBounce(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, newClock())
	w := s.NewWriter("nov")
	mustClaim(t, w, "ann@example.com", 2)
	w.Record(Outcome{Key: "ann@example.com", State: Sent, ProviderID: "<m1@acme.example>", Code: 250})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Mailed(ctx, "nov", "Ann@Example.com"); err != nil || !ok {
		t.Fatalf("Mailed = %v, %v", ok, err)
	}
	if ok, _ := s.Mailed(ctx, "nov", "bob@example.com"); ok {
		t.Fatal("Mailed reports a recipient never mailed")
	}
	c, e, ok, err := s.ByProviderID(ctx, "m1@acme.example")
	if err != nil || !ok || c != "nov" || e != "ann@example.com" {
		t.Fatalf("ByProviderID = %q %q %v %v", c, e, ok, err)
	}
	b := Bounce{Code: 550, Enhanced: "5.1.1", Reason: "550 5.1.1 <ann@example.com>: user unknown"}
	changed, err := s.RecordBounce(ctx, "nov", "Ann@Example.com", b)
	if err != nil || !changed {
		t.Fatalf("first RecordBounce = %v, %v; want a change", changed, err)
	}
	rs := rows(t, s, "nov")
	if len(rs) != 1 || rs[0].State != Failed || rs[0].Code != 550 || rs[0].Enhanced != "5.1.1" || rs[0].Reason != b.Reason {
		t.Fatalf("row after the bounce: %+v", rs)
	}
	if sup, _ := s.IsSuppressed(ctx, "ann@example.com"); !sup {
		t.Fatal("the bounced address is not suppressed")
	}
	if changed, err := s.RecordBounce(ctx, "nov", "ann@example.com", b); err != nil || changed {
		t.Fatalf("second RecordBounce = %v, %v; want no change", changed, err)
	}
	if changed, err := s.RecordComplaint(ctx, "nov", "carl@example.com", "abuse report"); err != nil || !changed {
		t.Fatalf("RecordComplaint = %v, %v", changed, err)
	}
	if changed, _ := s.RecordComplaint(ctx, "nov", "carl@example.com", "abuse report"); changed {
		t.Fatal("a second complaint changed something")
	}
}
