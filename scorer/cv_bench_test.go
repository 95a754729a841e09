package scorer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// BenchmarkCrossValidation measures what the README's classifier figures
// from TRAIN cross-validation say: for each ham weight, 5-fold
// cross-validation at the shipped setting (L2 4, 10 epochs) repeated over 5
// fold assignments (seeds 1-5), reporting the means of
//
//	catch@0.1%ham  spam scored above the 3rd-highest ham (2 of 2,895 allowed)
//	catch@0ham     spam scored above every ham
//	scl7%          spam at or above the SCL 7 cut that calibrate places
//	auc            area under the ROC curve
//
// on out-of-fold scores. It reads corpus/train only (scripts/corpus.sh):
//
//	go test -run='^$' -bench=CrossValidation -benchtime=1x ./scorer/
func BenchmarkCrossValidation(b *testing.B) {
	data := cvCorpus(b)
	for _, w := range []float64{1, 2, 4, 6, 8, 10, 12, 16} {
		b.Run(fmt.Sprintf("hamweight=%g", w), func(b *testing.B) {
			var c01, c0, c7, auc float64
			for range b.N {
				c01, c0, c7, auc = 0, 0, 0, 0
				for seed := uint64(1); seed <= 5; seed++ {
					z := cvScores(data, seed, 4, 10, w)
					h, s := byClass(z, data)
					_, cal := calibrate(h, s)
					c01 += catchAbove(h, s, 2) / 5
					c0 += catchAbove(h, s, 0) / 5
					c7 += cal.Rows[6].SpamRate / 5
					auc += AUC(h, s) / 5
				}
			}
			b.ReportMetric(100*c01, "catch@0.1%ham")
			b.ReportMetric(100*c0, "catch@0ham")
			b.ReportMetric(100*c7, "scl7%")
			b.ReportMetric(auc, "auc")
		})
	}
}

// cvCorpus reads and featurises corpus/train as Train does.
func cvCorpus(b *testing.B) []example {
	b.Helper()
	var data []example
	bodyTotal := 0
	for _, class := range []string{"ham", "spam"} {
		files, _ := filepath.Glob(filepath.Join("..", "corpus", "train", class, "*"))
		slices.Sort(files)
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			ids := featureBuckets(Parse(TrimMboxFrom(raw)), 20)
			bodyTotal += len(ids[viewBody])
			y := 0.0
			if class == "spam" {
				y = 1
			}
			data = append(data, example{ids: ids, y: y})
		}
	}
	if len(data) == 0 {
		b.Skip("no corpus: run scripts/corpus.sh to fetch the SpamAssassin corpus into corpus/")
	}
	mean := max(1, float64(bodyTotal)/float64(len(data)))
	for i := range data {
		data[i].v = bodyScale(len(data[i].ids[viewBody]), bodyMin, mean, bodyPow)
	}
	return data
}

// cvScores is Train's cross-validation at one setting: folds dealt per
// class with the seed, each fold scored by a model trained on the others.
func cvScores(data []example, seed uint64, l2 float64, epochs int, hamW float64) []float64 {
	const folds = 5
	n := len(data)
	nh := 0
	for _, d := range data {
		if d.y == 0 {
			nh++
		}
	}
	fold := dealFolds(seed, nh, n, folds)
	z := make([]float64, n)
	st := new(ftrl)
	for f := range folds {
		st.reset(20, 0, l2, hamW)
		train, test := split(fold, f)
		r := foldRand(seed, f)
		for range epochs {
			st.epoch(data, train, r)
		}
		for _, i := range test {
			for v := range numViews {
				z[i] += st.predictView(&data[i], v)
			}
		}
	}
	return z
}

// catchAbove is the share of spam scored above the (allowed+1)-th highest
// ham: the catch rate of the best cut that lets through allowed ham.
func catchAbove(ham, spam []float64, allowed int) float64 {
	h := slices.Clone(ham)
	slices.Sort(h)
	slices.Reverse(h)
	cut := h[min(allowed, len(h)-1)]
	c := 0
	for _, v := range spam {
		if v > cut {
			c++
		}
	}
	return float64(c) / float64(len(spam))
}
