package proxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sclgate/sclgate/scorer"
)

// heldEngine stands for an external engine (spamd, rspamd) that answers
// only once want calls are waiting on it at once (or after hold), and
// records the most calls it had at once.
type heldEngine struct {
	want int
	hold time.Duration

	mu      sync.Mutex
	cur     int
	max     int
	release chan struct{}
	once    sync.Once
}

func (e *heldEngine) Name() string { return "spamd" }

func (e *heldEngine) Classify(ctx context.Context, m *scorer.Message) (scorer.Verdict, error) {
	if len(m.Raw) == 0 {
		return scorer.Verdict{}, fmt.Errorf("no raw bytes")
	}
	e.mu.Lock()
	e.cur++
	e.max = max(e.max, e.cur)
	if e.cur >= e.want {
		e.once.Do(func() { close(e.release) })
	}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.cur--
		e.mu.Unlock()
	}()
	select {
	case <-e.release:
		return scorer.Verdict{SCL: 3, Score: 3}, nil
	case <-time.After(e.hold):
		return scorer.Verdict{}, fmt.Errorf("timed out")
	case <-ctx.Done():
		return scorer.Verdict{}, ctx.Err()
	}
}

// Large messages (spooled to disk) are parsed a few at a time, but an
// external engine's network wait is not held in one of those slots: with
// a slow engine, every large message waits for the engine at once, not
// two at a time (which made a message wait a timeout for each pair ahead
// of it while an engine was down).
func TestEngineWaitHoldsNoParseSlot(t *testing.T) {
	eng := &heldEngine{hold: 3 * time.Second, release: make(chan struct{})}
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), Classifier: &scorer.Fallback{Primary: eng, Secondary: scorer.None{}}})
	slots := cap(g.srv.bigScans)
	n := slots + 2
	eng.want = n // before any message: the engine is not asked yet
	big := strings.Repeat("a large message line of text for the spool\r\n", (spoolMem/44)+100)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("From: a@example.org\r\nTo: bob@example.com\r\nSubject: large %d\r\n\r\n%s", i, big)
			c, err := smtp.Dial(g.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			errs <- c.SendMail("alice@example.org", []string{"bob@example.com"}, strings.NewReader(msg))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("send: %v", err)
		}
	}
	eng.mu.Lock()
	most := eng.max
	eng.mu.Unlock()
	if most < n {
		t.Errorf("the engine had at most %d calls at once, want all %d large messages (parse slots: %d)", most, n, slots)
	}
	if got := len(ds.messages()); got != n {
		t.Errorf("%d messages delivered, want %d", got, n)
	}
	for _, m := range ds.messages() {
		if !strings.Contains(string(m.Data), "classifier=spamd") {
			t.Errorf("not scored by the engine: %.300q", m.Data)
			break
		}
	}
}
