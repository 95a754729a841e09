package scorer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The built-in model's tests train on a small generated sample, never on the
// corpus: they must run offline and fast.

var (
	builtinHamWords = strings.Fields(`meeting project report schedule attached review please thanks
regards team lunch tomorrow agenda notes draft patch build release kernel bug fix list thread
question answer config server install package version test commit branch merge docs`)
	builtinSpamWords = strings.Fields(`free money offer click here now limited time order today
winner lottery casino viagra cheap discount guaranteed cash credit unsubscribe remove earn
income opportunity amazing deal save best price bonus instant approval`)
)

// builtinSample generates n ham and n spam messages, deterministically:
// ham is plain text from a mailing list with replies, spam is HTML with
// links, as the two mostly look.
func builtinSample(n int, seed uint64) (ham, spam [][]byte) {
	r := rand.New(rand.NewPCG(seed, 99))
	words := func(vocab []string, k int) string {
		var b strings.Builder
		for i := range k {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(vocab[r.IntN(len(vocab))])
		}
		return b.String()
	}
	for i := range n {
		ham = append(ham, fmt.Appendf(nil, "From: Dev %d <dev%d@lists.example.org>\r\nTo: list@lists.example.org\r\n"+
			"Subject: Re: %s\r\nMessage-ID: <%d.%d@lists.example.org>\r\nDate: Mon, 4 Nov 2002 10:%02d:00 +0000\r\n"+
			"In-Reply-To: <x%d@lists.example.org>\r\nList-Id: <dev.lists.example.org>\r\n"+
			"Received: from mail.lists.example.org (mail.lists.example.org [192.0.2.%d]) by mx.example.com with ESMTP; Mon, 4 Nov 2002 10:%02d:05 +0000\r\n"+
			"Content-Type: text/plain; charset=us-ascii\r\n\r\n%s\r\n\r\n-- \r\nhttp://lists.example.org/dev\r\n",
			i, i, words(builtinHamWords, 4), i, i, i%60, i, 1+i%250, i%60, words(builtinHamWords, 40+r.IntN(40))))
		spam = append(spam, fmt.Appendf(nil, "From: Best Deals <deals%d@offers%d.example.net>\r\nTo: undisclosed-recipients:;\r\n"+
			"Subject: %s!!!\r\nMessage-ID: <%x@offers%d.example.net>\r\nDate: Mon, 4 Nov 2002 10:%02d:00 -1600\r\n"+
			"Received: from unknown (HELO pc%d) ([198.51.100.%d]) by mx.example.com with SMTP; Mon, 4 Nov 2002 10:%02d:05 +0000\r\n"+
			"MIME-Version: 1.0\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n"+
			"<html><body><p>%s</p><p><a href=\"http://%d.example.net/click?id=%d\">CLICK HERE</a></p><p>%s</p></body></html>\r\n",
			i, i, strings.ToUpper(words(builtinSpamWords, 4)), r.Uint64(), i, i%60, i, 1+i%250, i%60,
			words(builtinSpamWords, 30+r.IntN(30)), i, i, words(builtinSpamWords, 10)))
	}
	return ham, spam
}

// builtinOpts trains fast: few buckets, folds, passes and settings.
var builtinOpts = TrainOptions{Seed: 7, Bits: 14, Folds: 3, Epochs: []int{2, 4}, L2: []float64{1}, Version: "test-1"}

var builtinModel = sync.OnceValues(func() (*Model, error) {
	ham, spam := builtinSample(24, 1)
	m, _, err := Train(context.Background(), ham, spam, builtinOpts)
	return m, err
})

func testModel(t testing.TB) *Model {
	t.Helper()
	m, err := builtinModel()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTrainDeterministic(t *testing.T) {
	ham, spam := builtinSample(24, 1)
	train := func(o TrainOptions) []byte {
		t.Helper()
		m, _, err := Train(context.Background(), ham, spam, o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := train(builtinOpts)
	b := train(builtinOpts)
	if !bytes.Equal(a, b) {
		t.Fatal("same data and seed gave different models")
	}
	o := builtinOpts
	o.Workers = 2 // scheduling must not matter
	if !bytes.Equal(a, train(o)) {
		t.Fatal("2 workers gave a different model than 1")
	}
	o = builtinOpts
	o.Seed++
	if bytes.Equal(a, train(o)) {
		t.Log("another seed gave the same model (allowed, but unexpected)")
	}
}

// TestTrainHamWeight: weighting ham in the loss pulls down the legitimate
// messages that look like spam, which is what it is for.
func TestTrainHamWeight(t *testing.T) {
	ham, spam := builtinSample(28, 1)
	// Four spam-looking messages labelled ham (newsletters a user asked for).
	hard := spam[24:]
	ham, spam = append(ham[:24], hard...), spam[:24]
	score := func(w float64) float64 {
		t.Helper()
		o := builtinOpts
		o.HamWeight = w
		m, _, err := Train(context.Background(), ham, spam, o)
		if err != nil {
			t.Fatal(err)
		}
		var z float64
		for _, raw := range hard {
			z += m.LogOdds(Parse(raw))
		}
		return z / float64(len(hard))
	}
	if z1, z8 := score(1), score(8); !(z8 < z1-1) {
		t.Errorf("mean log-odds of the spam-looking ham: %.2f with ham weight 1, %.2f with 8; want clearly lower", z1, z8)
	}
}

func TestTrainReport(t *testing.T) {
	ham, spam := builtinSample(24, 1)
	var stages []string
	o := builtinOpts
	o.Progress = func(p Progress) {
		if len(stages) == 0 || stages[len(stages)-1] != p.Stage {
			stages = append(stages, p.Stage)
		}
		if p.Done > p.Total {
			t.Errorf("progress %+v", p)
		}
	}
	m, rep, err := Train(context.Background(), ham, spam, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(stages, ","); got != "read,cv,final" {
		t.Errorf("stages %s", got)
	}
	if rep.Ham != 24 || rep.Spam != 24 || rep.Features == 0 || rep.NonZero == 0 || len(rep.Grid) != 2 {
		t.Errorf("report %+v", rep)
	}
	if rep.Chosen.AUC < 0.95 {
		t.Errorf("cross-validated AUC %.3f on an easy sample", rep.Chosen.AUC)
	}
	if m.Name() != "builtin" || m.Version() != "test-1" || m.Info().TrainHam != 24 || m.Calibration() != rep.Calibration {
		t.Errorf("model %s %s %+v", m.Name(), m.Version(), m.Info())
	}
}

func TestTrainErrors(t *testing.T) {
	ham, spam := builtinSample(4, 1)
	for _, tc := range []struct {
		name      string
		ham, spam [][]byte
		o         TrainOptions
	}{
		{"too few", ham[:2], spam, TrainOptions{}},
		{"no spam", ham, nil, TrainOptions{Folds: 2}},
		{"bits", ham, spam, TrainOptions{Folds: 2, Bits: 40}},
		{"l2", ham, spam, TrainOptions{Folds: 2, L2: []float64{math.NaN()}}},
		{"epochs", ham, spam, TrainOptions{Folds: 2, Epochs: []int{0}}},
		{"ham weight", ham, spam, TrainOptions{Folds: 2, HamWeight: -1}},
		{"ham weight NaN", ham, spam, TrainOptions{Folds: 2, HamWeight: math.NaN()}},
	} {
		if _, _, err := Train(context.Background(), tc.ham, tc.spam, tc.o); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Train(ctx, ham, spam, TrainOptions{Folds: 2, Bits: 12}); err == nil {
		t.Error("cancelled: no error")
	}
}

func TestModelRoundTrip(t *testing.T) {
	m := testModel(t)
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want := modelHeadLen + len("test-1") + 2<<14 + 4; len(b) != want {
		t.Errorf("%d bytes, want %d", len(b), want)
	}
	m2, err := LoadModel(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := m2.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatal("marshal(load(b)) != b")
	}
	var m3 Model
	if err := m3.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if m2.Calibration() != m.Calibration() || m3.Info() != m2.Info() || m2.Version() != "test-1" {
		t.Error("calibration or info lost")
	}
	ham, spam := builtinSample(5, 2)
	for _, raw := range append(ham, spam...) {
		msg := Parse(raw)
		v1, _ := m.Classify(context.Background(), msg)
		v2, _ := m2.Classify(context.Background(), msg)
		v3, _ := m3.Classify(context.Background(), msg)
		if v1 != v2 || v1 != v3 {
			t.Fatalf("verdicts differ after round trip: %+v %+v %+v", v1, v2, v3)
		}
	}
}

func TestLoadModelCorrupt(t *testing.T) {
	b, err := testModel(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n += 1 + n/8 {
		if _, err := LoadModel(b[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
	if _, err := LoadModel(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("trailing byte: no error")
	}
	for _, i := range []int{0, 4, 6, 8, 16, 40, 200, len(b) / 2, len(b) - 1} {
		c := bytes.Clone(b)
		c[i] ^= 0x10
		if _, err := LoadModel(c); err == nil {
			t.Errorf("byte %d flipped: no error", i)
		}
	}
	// Right checksum, wrong content: every check must still hold.
	for _, tc := range []struct {
		name string
		edit func([]byte)
	}{
		{"format", func(c []byte) { c[4] = 9 }},
		{"features", func(c []byte) { c[6] = 99 }},
		{"bits", func(c []byte) { c[8] = 30 }},
		{"scale NaN", func(c []byte) { copy(c[24:], []byte{0, 0, 0, 0, 0, 0, 0xf8, 0x7f}) }},
		{"cut order", func(c []byte) { copy(c[48+40*8:], []byte{0, 0, 0, 0, 0, 0, 0xf0, 0xff}) }},
		{"rate", func(c []byte) { copy(c[48+40*8+16:], []byte{0, 0, 0, 0, 0, 0, 0, 0x40}) }},
	} {
		c := bytes.Clone(b)
		tc.edit(c)
		body := c[:len(c)-4]
		c = append(body, crcLE(body)...)
		if _, err := LoadModel(c); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func FuzzLoadModel(f *testing.F) {
	ham, spam := builtinSample(6, 3)
	m, _, err := Train(context.Background(), ham, spam, TrainOptions{Bits: 10, Folds: 2, Epochs: []int{1}, L2: []float64{1}})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := m.MarshalBinary()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("SCLM"))
	f.Add([]byte{})
	msg := Parse(spam[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := LoadModel(b)
		if err != nil {
			return
		}
		v, err := m.Classify(context.Background(), msg)
		if err != nil || v.SCL < 1 || v.SCL > 9 || !(v.Score >= 0 && v.Score <= 1) {
			t.Fatalf("verdict %+v, %v", v, err)
		}
		b2, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatal("loaded model does not marshal back to its bytes")
		}
	})
}

func TestCalibrationMonotonic(t *testing.T) {
	check := func(name string, cuts [9]float64, cal Calibration) {
		t.Helper()
		if !math.IsInf(cuts[0], -1) || cal.Rows[0].Cut != 0 || cal.Rows[0].HamRate != 1 || cal.Rows[0].SpamRate != 1 {
			t.Errorf("%s: SCL 1 row %+v", name, cal.Rows[0])
		}
		for i := 1; i < 9; i++ {
			r, p := cal.Rows[i], cal.Rows[i-1]
			if r.SCL != i+1 || cuts[i] < cuts[i-1] || r.Cut < p.Cut || r.HamRate > p.HamRate || r.SpamRate > p.SpamRate {
				t.Errorf("%s: row %d %+v after %+v", name, i+1, r, p)
			}
			if r.HamRate > r.HamTarget+1e-12 {
				t.Errorf("%s: SCL %d ham rate %g over its target %g", name, i+1, r.HamRate, r.HamTarget)
			}
		}
		prev := 0
		for _, p := range []float64{0, 1e-9, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999999, 1 - 1e-15, 1} {
			s := cal.SCL(p)
			if s < prev || s < 1 || s > 9 {
				t.Errorf("%s: SCL(%g) = %d after %d", name, p, s, prev)
			}
			prev = s
		}
	}
	m := testModel(t)
	check("trained", m.cuts, m.Calibration())

	// Overlapping classes, a heavy ham tail, ties, tiny samples.
	r := rand.New(rand.NewPCG(5, 6))
	var ham, spam []float64
	for range 3000 {
		ham = append(ham, r.NormFloat64()*2-6)
	}
	for range 1000 {
		spam = append(spam, r.NormFloat64()*4+8)
	}
	ham = append(ham, 20, 30, 9)
	cuts, cal := calibrate(ham, spam)
	check("normal", cuts, cal)
	if cal.Rows[6].HamRate > 0.001 || cal.Rows[8].HamRate != 0 {
		t.Errorf("ham rates %+v", cal.Rows)
	}
	cuts, cal2 := calibrate([]float64{1, 1, 1, 1}, []float64{1, 1})
	check("ties", cuts, cal2)
	cuts, cal2 = calibrate([]float64{-1}, []float64{1})
	check("one each", cuts, cal2)
	if !strings.Contains(cal.String(), "at most 0.10%") {
		t.Errorf("table:\n%s", cal)
	}
}

func TestClassifyRange(t *testing.T) {
	m := testModel(t)
	ham, spam := builtinSample(20, 42) // not the training sample
	inputs := append(append([][]byte{}, ham...), spam...)
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "messages", "*.eml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	inputs = append(inputs, nil, []byte("\x00\xff garbage"), []byte("Subject: x\r\n\r\n"+strings.Repeat("free money ", 100000)))
	for i, raw := range inputs {
		v, err := m.Classify(context.Background(), Parse(raw))
		if err != nil || v.SCL < 1 || v.SCL > 9 || !(v.Score >= 0 && v.Score <= 1) {
			t.Errorf("input %d: %+v %v", i, v, err)
		}
	}
	var hz, sz []float64
	for _, raw := range ham {
		hz = append(hz, m.LogOdds(Parse(raw)))
	}
	for _, raw := range spam {
		sz = append(sz, m.LogOdds(Parse(raw)))
	}
	if auc := AUC(hz, sz); auc < 0.99 {
		t.Errorf("AUC %.3f on fresh generated messages", auc)
	}
	if ex := m.Explain(Parse(spam[0]), 5); len(ex) != 5 || ex[0].Feature == "" {
		t.Errorf("explain: %+v", ex)
	}
}

func TestClassifyConcurrent(t *testing.T) {
	m := testModel(t)
	ham, spam := builtinSample(10, 8)
	msgs := make([]*Message, 0, 20)
	want := make([]Verdict, 0, 20)
	for _, raw := range append(ham, spam...) {
		msg := Parse(raw)
		v, _ := m.Classify(context.Background(), msg)
		msgs = append(msgs, msg)
		want = append(want, v)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 50 {
				i := (g + k) % len(msgs)
				v, err := m.Classify(context.Background(), msgs[i])
				if err != nil || v != want[i] {
					t.Errorf("goroutine %d message %d: %+v, want %+v", g, i, v, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestAUC(t *testing.T) {
	for _, tc := range []struct {
		ham, spam []float64
		want      float64
	}{
		{[]float64{0, 1}, []float64{2, 3}, 1},
		{[]float64{2, 3}, []float64{0, 1}, 0},
		{[]float64{1}, []float64{1}, 0.5},
		{[]float64{0, 2}, []float64{1, 3}, 0.75},
	} {
		if got := AUC(tc.ham, tc.spam); got != tc.want {
			t.Errorf("AUC(%v, %v) = %g, want %g", tc.ham, tc.spam, got, tc.want)
		}
	}
}

func TestTrimMboxFrom(t *testing.T) {
	for in, want := range map[string]string{
		"From a@b  Thu Aug 22 13:17:22 2002\nSubject: x\n\nbody": "Subject: x\n\nbody",
		"Subject: x\n\nFrom here":                                "Subject: x\n\nFrom here",
		"From: a@b\n\nx":                                         "From: a@b\n\nx",
	} {
		if got := string(TrimMboxFrom([]byte(in))); got != want {
			t.Errorf("TrimMboxFrom(%q) = %q", in, got)
		}
	}
}

// TestFeaturesStable pins the feature hashes of a fixed message. If it
// fails, the features changed: bump FeatureVersion (models trained before
// no longer mean the same thing) and update the sum here.
func TestFeaturesStable(t *testing.T) {
	ham, spam := builtinSample(1, 1)
	var sum uint64
	for _, raw := range [][]byte{ham[0], spam[0], testdataMessage(t, "multipart-alt.eml"), testdataMessage(t, "evasive-mime.eml"), testdataMessage(t, "base64-junk.eml"), testdataMessage(t, "hostile-reading.eml")} {
		var x extractor
		x.extract(Parse(raw))
		for g, hs := range x.hs {
			for _, h := range hs {
				sum = sum*31 + h + uint64(g)
			}
		}
	}
	const want = 0x1701f2f709f72acb
	if sum != want || FeatureVersion != 16 {
		t.Errorf("feature hash sum %#x, want %#x (feature version %d)", sum, uint64(want), FeatureVersion)
	}
}

func testdataMessage(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "messages", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFeatures(t *testing.T) {
	raw := []byte("From: \"Shop\" <news@shop.example.com>\r\nTo: bob@example.org\r\nSubject: FREE OFFER\r\n" +
		"Message-ID: <123.abc@shop.example.com>\r\nDate: Mon, 4 Nov 2002 10:00:00 -1600\r\n" +
		"Received: from localhost (localhost [127.0.0.1]) by mx.example.org; Mon, 4 Nov 2002 12:00:00 +0000\r\n" +
		"Received: from relay.collector.example (relay.collector.example [198.51.100.7]) by mx.example.org; Mon, 4 Nov 2002 12:00:00 +0000\r\n" +
		"Received: from helo.example.net (host.shop.example.com [203.0.113.5]) by mx.example.org with ESMTP; Mon, 4 Nov 2002 11:59:00 +0000\r\n" +
		"Return-Path: <x@y.example>\r\nX-Spam-Status: Yes\r\nContent-Type: text/html\r\n\r\n" +
		"<p>Dear bob@example.org, click <a href=\"http://user@1.2.3.4:8080/x.exe\">here</a> or www.shop.example.com/deals</p>")
	var names [numViews][]string
	x := extractor{names: &names}
	x.extract(Parse(raw))
	got := strings.Join(append(append(names[viewBody], names[viewSubject]...), names[viewForm]...), " ")
	for _, want := range []string{
		"w:dear", "b:dear bob", "s:free", "t:free offer", "j:subj.allcaps",
		"h:from.reg=example.com", "h:from.name=shop", "h:mid.fromdom", "h:date.badzone",
		"h:date.skew=future.hour", "h:rcvd.n=2", "h:rcvd.all=3", "h:rcvd.helo.mismatch", "h:rcvd.fromdom", "h:to.inbody.addr",
		"u:host.ip", "u:userinfo", "u:port", "u:ext=exe", "u:reg=example.com", "u:fromdom.most", "x:html.only", "h:date.shape=Aa, 9 Aa 9 9:9:9 -9",
	} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("missing feature %s", want)
		}
	}
	for _, bad := range []string{"return-path", "x-spam-status", "localhost", "collector"} {
		if strings.Contains(strings.ToLower(got), bad) {
			t.Errorf("feature from ignored field, local hop or the newest outside hop: %s", bad)
		}
	}
	if t.Failed() {
		t.Log(got)
	}
}

// crcLE is the model format's trailer for body.
func crcLE(body []byte) []byte {
	return binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(body))
}

// An explanation accounts for the whole verdict: every feature's log-odds
// plus the model's bias is the message's log-odds, so what scan -explain
// lists is the model's own arithmetic, not an estimate.
func TestExplainAddsUp(t *testing.T) {
	m := testModel(t)
	ham, spam := builtinSample(5, 5)
	for _, raw := range append(ham, spam...) {
		msg := Parse(raw)
		all := m.Explain(msg, -1)
		sum := m.bias
		for i, c := range all {
			sum += c.Weight
			if i > 0 && math.Abs(c.Weight) > math.Abs(all[i-1].Weight) {
				t.Fatalf("not weightiest first at %d: %+v", i, all[i-1:i+1])
			}
		}
		if z := m.LogOdds(msg); math.Abs(sum-z) > 1e-9*max(1, math.Abs(z)) {
			t.Errorf("features and bias add to %v, LogOdds is %v", sum, z)
		}
	}
}

// Scorer.Explain explains only verdicts the built-in model gave: itself,
// or standing in for a failed engine.
func TestScorerExplain(t *testing.T) {
	m := testModel(t)
	_, spam := builtinSample(1, 3)
	msg := Parse(spam[0])
	ctx := context.Background()
	down := &Fallback{Primary: failing{}, Secondary: m}
	up := &Fallback{Primary: None{}, Secondary: m}
	for _, c := range []struct {
		name string
		cl   Classifier
		want int
	}{{"builtin", m, 3}, {"fallback used", down, 3}, {"engine answered", up, 0}, {"none", None{}, 0}} {
		s := &Scorer{Classifier: c.cl}
		r, err := s.Score(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Explain(msg, r, 3); len(got) != c.want {
			t.Errorf("%s: %d features, want %d", c.name, len(got), c.want)
		}
	}
}

// A very short body counts as bodyMin features in the length
// normalisation: its words weigh what a 24-feature message's do, not up to
// (mean)^0.5 times their weight. The floor travels with the model, and a
// model written before it (0) has none.
func TestBodyFloor(t *testing.T) {
	m := testModel(t)
	if m.bodyMin != bodyMin {
		t.Fatalf("trained model has bodyMin %d, want %d", m.bodyMin, bodyMin)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := LoadModel(b)
	if err != nil || m2.bodyMin != bodyMin {
		t.Fatalf("loaded bodyMin %v, %v", m2.bodyMin, err)
	}
	if got, want := bodyScale(1, bodyMin, 400, 0.5), bodyScale(bodyMin, 0, 400, 0.5); got != want {
		t.Errorf("one feature scales %v, want %v as for %d", got, want, bodyMin)
	}
	if got, want := bodyScale(100, bodyMin, 400, 0.5), bodyScale(100, 0, 400, 0.5); got != want {
		t.Errorf("100 features scale %v, want %v: the floor must not touch longer messages", got, want)
	}
	if bodyScale(1, 0, 400, 0.5) != 20 {
		t.Errorf("no floor: one feature should scale (400/1)^0.5 = 20")
	}
}

// TestGTUBE: the GTUBE line in the body text gives SCL 9 whatever the
// features say (as SpamAssassin and rspamd do); quoted-printable soft
// breaks inside it are decoded first, and half of it is nothing.
func TestGTUBE(t *testing.T) {
	m := testModel(t)
	hamish := "From: Dev <dev@lists.example.org>\r\nSubject: Re: meeting\r\nContent-Type: text/plain\r\n\r\nmeeting project report thanks\r\n"
	for _, tc := range []struct {
		name, raw string
		gtube     bool
	}{
		{"plain", hamish + GTUBE + "\r\n", true},
		{"qp soft break", strings.Replace(hamish, "text/plain", "text/plain\r\nContent-Transfer-Encoding: quoted-printable", 1) + GTUBE[:30] + "=\r\n" + GTUBE[30:] + "\r\n", true},
		{"half", hamish + GTUBE[:40] + "\r\n", false},
		{"none", hamish, false},
	} {
		v, err := m.Classify(context.Background(), Parse([]byte(tc.raw)))
		if err != nil {
			t.Fatal(err)
		}
		if got := v.SCL == MaxSCL && v.Score == 1; got != tc.gtube {
			t.Errorf("%s: verdict %+v, GTUBE %v", tc.name, v, tc.gtube)
		}
		// What explains the verdict: the GTUBE line, not features.
		if ex := m.Explain(Parse([]byte(tc.raw)), 5); (len(ex) == 1 && ex[0].Feature == GTUBEExplained) != tc.gtube {
			t.Errorf("%s: Explain = %v", tc.name, ex)
		}
	}
}
