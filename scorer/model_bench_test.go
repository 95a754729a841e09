package scorer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sclgate/sclgate/weights"
)

// builtinBenchWeights is a weight list of 100 phrases, for benchmarks of
// the whole scoring path (classifier and weight list).
func builtinBenchWeights(b *testing.B) *weights.List {
	b.Helper()
	var x strings.Builder
	x.WriteString("<CustomWeightEntries>\n")
	words := append(slices.Clone(builtinHamWords), builtinSpamWords...)
	for i := range 100 {
		x.WriteString(`<CustomWeightEntry Type="BOTH" Change="1" Text="` + words[i%len(words)] + " " + words[(i*7+3)%len(words)] + `"/>` + "\n")
	}
	x.WriteString("</CustomWeightEntries>\n")
	l, err := weights.Parse("bench.xml", strings.NewReader(x.String()))
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkBuiltinTestSplit is the scoring path on the SpamAssassin TEST
// split (scripts/corpus.sh): every message, already in memory, parsed,
// classified by the built-in model and matched against a 100-phrase weight
// list. The model is corpus/model.bin when there is one (sclgate defs train
// -o corpus/model.bin), else one trained here on corpus/train. Reports
// msgs/s for one goroutine; run with -cpu 1 for one core.
func BenchmarkBuiltinTestSplit(b *testing.B) {
	corpus := filepath.Join("..", "corpus")
	var msgs [][]byte
	var size int64
	for _, class := range []string{"ham", "spam"} {
		files, _ := filepath.Glob(filepath.Join(corpus, "test", class, "*"))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, raw)
			size += int64(len(raw))
		}
	}
	if len(msgs) == 0 {
		b.Skip("no corpus: run scripts/corpus.sh to fetch the SpamAssassin corpus into corpus/")
	}
	var m *Model
	if raw, err := os.ReadFile(filepath.Join(corpus, "model.bin")); err == nil {
		if m, err = LoadModel(raw); err != nil {
			b.Fatalf("corpus/model.bin: %v", err)
		}
	} else {
		var ham, spam [][]byte
		for _, class := range []string{"ham", "spam"} {
			files, _ := filepath.Glob(filepath.Join(corpus, "train", class, "*"))
			for _, f := range files {
				raw, err := os.ReadFile(f)
				if err != nil {
					b.Fatal(err)
				}
				if class == "ham" {
					ham = append(ham, raw)
				} else {
					spam = append(spam, raw)
				}
			}
		}
		if m, _, err = Train(context.Background(), ham, spam, TrainOptions{Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
	l := builtinBenchWeights(b)
	s := &Scorer{Classifier: m, Weights: func() *weights.List { return l }}
	ctx := context.Background()
	b.SetBytes(size / int64(len(msgs)))
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		raw := msgs[n%len(msgs)]
		n++
		if _, err := s.Score(ctx, Parse(TrimMboxFrom(raw))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkClassify is the built-in model alone on one generated spam
// message (HTML with links), already parsed.
func BenchmarkClassify(b *testing.B) {
	m := testModel(b)
	_, spam := builtinSample(1, 9)
	msg := Parse(spam[0])
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Classify(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
