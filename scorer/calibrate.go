package scorer

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// HamTarget is the stated meaning of each SCL of the built-in model: at most
// this fraction of legitimate mail is given that SCL or a higher one. Each
// step up divides it by √10, so SCL ≥ 5 lets through at most 1% of ham,
// SCL ≥ 7 (the default gateway threshold) at most 0.1%, SCL 9 at most
// 0.01%. HamTarget[0] is unused: SCL 0 is never given by the model (it is for
// MIN rules and unfiltered mail).
var HamTarget = [10]float64{0, 1, 0.316228, 0.1, 0.0316228, 0.01, 0.00316228, 0.001, 0.000316228, 0.0001}

// CalRow is one row of the calibration table: a message whose spam
// probability is at least Cut gets SCL ≥ SCL. HamRate and SpamRate are the
// fractions of ham and spam that got SCL ≥ SCL in cross-validation on the
// training data; HamTarget is what the row was chosen to guarantee.
type CalRow struct {
	SCL       int     `json:"scl"`
	Cut       float64 `json:"cut"` // spam probability
	HamTarget float64 `json:"ham_target"`
	HamRate   float64 `json:"ham_rate"`
	SpamRate  float64 `json:"spam_rate"`
	Ham       int     `json:"ham"`  // ham messages at or above Cut, of HamRate's sample
	Spam      int     `json:"spam"` // spam messages at or above Cut
}

// Calibration maps the model's spam probability to SCL 1..9. Rows[i] is SCL
// i+1; the cuts are non-decreasing, and Rows[0].Cut is 0 (every message is
// at least SCL 1).
type Calibration struct {
	Rows [9]CalRow `json:"rows"`
}

// SCL returns the SCL for spam probability p: the highest SCL whose cut p
// reaches.
func (c Calibration) SCL(p float64) int {
	s := 1
	for i := 1; i < len(c.Rows); i++ {
		if p >= c.Rows[i].Cut {
			s = i + 1
		}
	}
	return s
}

// String is the table as an admin reads it.
func (c Calibration) String() string {
	var b strings.Builder
	b.WriteString("SCL  spam probability ≥   meaning: ham at this SCL or above   measured (cross-validation): ham   spam\n")
	for _, r := range c.Rows {
		fmt.Fprintf(&b, "%3d  %-20s   at most %-8s                        %8s  %6s\n",
			r.SCL, formatCut(r.Cut), pct(r.HamTarget), pct(r.HamRate), pct(r.SpamRate))
	}
	return b.String()
}

func formatCut(p float64) string {
	switch {
	case p <= 0:
		return "0 (any)"
	case p > 0.999:
		return fmt.Sprintf("1-%.2g", 1-p)
	}
	return fmt.Sprintf("%.4f", p)
}

func pct(f float64) string {
	switch {
	case f >= 0.1:
		return fmt.Sprintf("%.1f%%", 100*f)
	case f >= 0.001:
		return fmt.Sprintf("%.2f%%", 100*f)
	case f == 0:
		return "0%"
	}
	return fmt.Sprintf("%.3f%%", 100*f)
}

// tailMin is the number of ham messages allowed above a cut below which the
// empirical quantile alone is too noisy and the exponential tail fit is
// consulted as well.
const tailMin = 10

// calibrate chooses the cuts, in log-odds, from out-of-fold log-odds of ham
// and spam (each model scored only messages it was not trained on), and
// returns them with the table.
//
// For SCL s the cut is the lowest at which at most HamTarget[s] of the ham
// is at or above it. Where that allows fewer than tailMin ham messages, the
// sample says little about the tail, so the cut is also placed by an
// exponential fit to the ham scores' upper tail (peaks over threshold: the
// top 1% of ham, at least 10 messages), and the higher of the two is used.
// That is what puts SCL 8 and 9, whose targets are below one message of the
// training ham, at a distance from the highest ham seen that grows with how
// spread out the ham tail is.
func calibrate(ham, spam []float64) (cuts [9]float64, cal Calibration) {
	hamDesc := slices.Clone(ham)
	slices.Sort(hamDesc)
	slices.Reverse(hamDesc)
	n := len(hamDesc)

	// Tail fit: the k highest ham scores over the k-th.
	k := min(n, max(tailMin, (n+99)/100))
	var u, sigma float64
	if k >= 2 {
		u = hamDesc[k-1]
		for _, z := range hamDesc[:k-1] {
			sigma += z - u
		}
		sigma /= float64(k - 1)
	}
	sigma = max(sigma, 0.25) // a degenerate tail (ties) is not a licence to cut close

	cuts[0] = math.Inf(-1)
	for s := 2; s <= 9; s++ {
		r := HamTarget[s]
		allowed := int(math.Floor(r*float64(n) + 1e-9))
		t := math.Inf(-1)
		if allowed < n {
			t = math.Nextafter(hamDesc[allowed], math.Inf(1))
		}
		if allowed < tailMin && k >= 2 && r*float64(n) < float64(k) {
			t = max(t, u+sigma*math.Log(float64(k)/(r*float64(n))))
		}
		cuts[s-1] = max(t, cuts[s-2])
	}
	for i := range cal.Rows {
		h, s := countAtLeast(ham, cuts[i]), countAtLeast(spam, cuts[i])
		cal.Rows[i] = CalRow{
			SCL:       i + 1,
			Cut:       sigmoid(cuts[i]),
			HamTarget: HamTarget[i+1],
			HamRate:   rate(h, len(ham)),
			SpamRate:  rate(s, len(spam)),
			Ham:       h,
			Spam:      s,
		}
	}
	return cuts, cal
}

func countAtLeast(zs []float64, t float64) int {
	c := 0
	for _, z := range zs {
		if z >= t {
			c++
		}
	}
	return c
}

func rate(k, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(k) / float64(n)
}

// sclOf maps log-odds z to SCL 1..9 with cuts in log-odds.
func sclOf(cuts *[9]float64, z float64) int {
	s := 1
	for i := 1; i < len(cuts); i++ {
		if z >= cuts[i] {
			s = i + 1
		}
	}
	return s
}

func sigmoid(z float64) float64 {
	switch {
	case math.IsInf(z, -1):
		return 0
	case math.IsInf(z, 1):
		return 1
	}
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// AUC is the area under the ROC curve of scores for ham and spam: the
// probability that a random spam scores above a random ham, ties counting
// half.
func AUC(ham, spam []float64) float64 {
	if len(ham) == 0 || len(spam) == 0 {
		return math.NaN()
	}
	h := slices.Clone(ham)
	s := slices.Clone(spam)
	slices.Sort(h)
	slices.Sort(s)
	var sum float64
	i, j := 0, 0 // h[:i] < current spam score, h[i:j] == it
	for _, v := range s {
		for i < len(h) && h[i] < v {
			i++
		}
		if j < i {
			j = i
		}
		for j < len(h) && h[j] <= v {
			j++
		}
		sum += float64(i) + 0.5*float64(j-i)
	}
	return sum / (float64(len(h)) * float64(len(s)))
}
