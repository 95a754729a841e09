package scorer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
)

// Model is the built-in statistical classifier: logistic regression over
// hashed features (see features.go), with a calibration table that maps its
// spam probability to SCL 1..9. A Model is immutable once made by Train or
// LoadModel and safe for concurrent use; Classify does no I/O and takes no
// locks.
type Model struct {
	bits  uint8   // 1<<bits weights
	bias  float64 // log-odds of a message with no features
	scale float64 // weight i is w[i]*scale
	// Body words count (nb/bodyMean)^-bodyPow each, nb being the message's
	// number of distinct body features but at least bodyMin: a long
	// message's many weak words do not add up past its few strong signals,
	// and a very short one's few words are not blown up past all the rest.
	bodyMean, bodyPow float64
	bodyMin           uint16
	w                 []int16
	cuts              [9]float64 // log-odds at which SCL 1..9 start; cuts[0] = -Inf
	cal               Calibration
	info              ModelInfo
	version           string
}

// ModelInfo is what a model records about its training, for reports.
type ModelInfo struct {
	FeatureVersion int     `json:"feature_version"`
	Bits           int     `json:"bits"`
	TrainHam       int     `json:"train_ham"`
	TrainSpam      int     `json:"train_spam"`
	Seed           uint64  `json:"seed"`
	CVAUC          float64 `json:"cv_auc"` // cross-validated AUC on the training data
	NonZero        int     `json:"nonzero_weights"`
	L1             float64 `json:"l1"`
	L2             float64 `json:"l2"`
	Epochs         int     `json:"epochs"`
}

// Name is "builtin".
func (m *Model) Name() string { return "builtin" }

// Calibration is the model's SCL table.
func (m *Model) Calibration() Calibration { return m.cal }

// Info describes how the model was trained.
func (m *Model) Info() ModelInfo { return m.info }

// Version is the version string given at training (may be empty).
func (m *Model) Version() string { return m.version }

// Classify gives msg the model's spam probability (Score, 0..1) and the SCL
// (1..9) that the calibration table assigns to it.
func (m *Model) Classify(_ context.Context, msg *Message) (Verdict, error) {
	if IsGTUBE(msg) {
		return Verdict{SCL: MaxSCL, Score: 1}, nil
	}
	return m.Verdict(m.LogOdds(msg)), nil
}

// GTUBE is the Generic Test for Unsolicited Bulk Email, a line that
// SpamAssassin, rspamd and most filters score as certain spam, so that a
// postmaster can test the path spam takes without sending any.
const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// IsGTUBE reports whether msg's decoded body text holds the GTUBE line:
// the built-in model then gives SCL 9 whatever its features say, as
// SpamAssassin and rspamd do (an admin's weight list still applies on top).
func IsGTUBE(msg *Message) bool { return strings.Contains(msg.Text, GTUBE) }

// GTUBEExplained is Explain's one entry for a GTUBE message.
const GTUBEExplained = "GTUBE test line in the body: classifier SCL 9 whatever the features say"

// Verdict is the verdict for a message of spam log-odds z (see LogOdds):
// Classify is Verdict(LogOdds(msg)), except for GTUBE (IsGTUBE).
func (m *Model) Verdict(z float64) Verdict {
	return Verdict{SCL: sclOf(&m.cuts, z), Score: sigmoid(z)}
}

// logOddsBufs are LogOdds's scratch slices, reused across messages
// (about 30 KB less garbage per 10 KB message).
type logOddsBufs struct {
	hs  [numViews][]uint64
	buf []uint32
}

var logOddsPool = sync.Pool{New: func() any { return new(logOddsBufs) }}

// LogOdds is the model's spam log-odds for msg, log(p/(1-p)): the figure
// before the logistic function, which keeps its resolution where the
// probability rounds to 0 or 1.
func (m *Model) LogOdds(msg *Message) float64 {
	pb := logOddsPool.Get().(*logOddsBufs)
	defer func() {
		if cap(pb.hs[viewBody]) <= 1<<16 {
			logOddsPool.Put(pb)
		}
	}()
	var x extractor
	x.hs[viewBody] = growU64(pb.hs[viewBody], 64+min(2*maxBodyTokens, len(msg.Text)/3))
	x.hs[viewSubject] = growU64(pb.hs[viewSubject], 32)
	x.hs[viewForm] = growU64(pb.hs[viewForm], 256)
	x.extract(msg)
	pb.hs = x.hs
	largest := 0
	for _, hs := range x.hs {
		largest = max(largest, len(hs))
	}
	need := max(64, 2<<bits.Len(uint(largest)))
	if cap(pb.buf) < need {
		pb.buf = make([]uint32, 0, need)
	}
	buf := pb.buf[:0]
	var z float64
	for g := range x.hs {
		var sum int64
		n := forEachBucketIn(buf, x.hs[g], m.bits, func(b uint32) { sum += int64(m.w[b]) })
		if g == viewBody {
			z += float64(sum) * bodyScale(n, m.bodyMin, m.bodyMean, m.bodyPow)
		} else {
			z += float64(sum)
		}
	}
	return m.bias + z*m.scale
}

func growU64(s []uint64, n int) []uint64 {
	if cap(s) < n {
		return make([]uint64, 0, n)
	}
	return s[:0]
}

// bodyScale is the value of each body feature of a message with nb of them,
// counted as at least least of them.
func bodyScale(nb int, least uint16, mean, pow float64) float64 {
	if pow == 0 || nb == 0 {
		return 1
	}
	return math.Pow(float64(max(nb, int(least)))/mean, -pow)
}

// Contribution is one feature's part in a verdict, for explaining it.
type Contribution struct {
	Feature string  // e.g. "w:viagra", "h:from.reg=example.com"
	Weight  float64 // its log-odds
}

// Explain returns the n features of msg that weigh most (by absolute
// log-odds), largest first. Names are approximate where two features share a
// hash bucket. Slower than Classify: for reports and debugging. A GTUBE
// message's verdict comes from the GTUBE line, not from its features: that
// one entry (log-odds 0, its name saying so) is what explains it.
func (m *Model) Explain(msg *Message, n int) []Contribution {
	if IsGTUBE(msg) {
		return []Contribution{{Feature: GTUBEExplained}}
	}
	var names [numViews][]string
	x := extractor{names: &names}
	x.extract(msg)
	var out []Contribution
	for g, hs := range x.hs {
		v := 1.0
		if g == viewBody {
			v = bodyScale(forEachBucket(hs, m.bits, func(uint32) {}), m.bodyMin, m.bodyMean, m.bodyPow)
		}
		seen := make(map[uint32]bool)
		for i, h := range hs {
			b := uint32(h >> (64 - m.bits))
			if seen[b] {
				continue
			}
			seen[b] = true
			if w := float64(m.w[b]) * m.scale * v; w != 0 {
				out = append(out, Contribution{Feature: names[g][i], Weight: w})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Contribution) int {
		switch {
		case math.Abs(a.Weight) > math.Abs(b.Weight):
			return -1
		case math.Abs(a.Weight) < math.Abs(b.Weight):
			return 1
		}
		return 0
	})
	if n >= 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// forEachBucket calls f once for each distinct bucket of the hashes hs, in
// the order first seen, and returns how many there were. The top bits of a
// hash are its bucket.
func forEachBucket(hs []uint64, bits uint8, f func(uint32)) int {
	return forEachBucketIn(nil, hs, bits, f)
}

// forEachBucketIn is forEachBucket with scratch space for its set: buf is
// used (cleared) when it is large enough.
func forEachBucketIn(buf []uint32, hs []uint64, bits uint8, f func(uint32)) int {
	n := 0
	size := 64
	for size < 2*len(hs) {
		size *= 2
	}
	var set []uint32 // bucket+1; 0 is empty
	if cap(buf) >= size {
		set = buf[:size]
		clear(set)
	} else {
		set = make([]uint32, size)
	}
	mask := uint32(size - 1)
	for _, h := range hs {
		b := uint32(h >> (64 - bits))
		i := b & mask
		for {
			switch set[i] {
			case 0:
				set[i] = b + 1
				f(b)
				n++
			case b + 1:
			default:
				i = (i + 1) & mask
				continue
			}
			break
		}
	}
	return n
}

// featureBuckets returns the distinct buckets of msg's features, by view.
func featureBuckets(msg *Message, bits uint8) (ids [numViews][]uint32) {
	var x extractor
	x.extract(msg)
	for g, hs := range x.hs {
		out := make([]uint32, 0, len(hs))
		forEachBucket(hs, bits, func(b uint32) { out = append(out, b) })
		ids[g] = slices.Clip(out)
	}
	return ids
}

// Binary format, little-endian:
//
//	magic "SCLM", format version uint16 (1), feature version uint16,
//	bits uint8, 7 bytes reserved (0),
//	bias float64, scale float64, body mean float64, body power float64,
//	9 × {cut log-odds float64, ham target, ham rate, spam rate float64,
//	     ham count uint32, spam count uint32},
//	train ham uint32, train spam uint32, seed uint64, CV AUC float64,
//	L1 float64, L2 float64, epochs uint32, version length uint8, version,
//	1<<bits weights int16,
//	CRC-32 (IEEE) of all that precedes, uint32.
//
// The weights are quantised to int16 with one scale for the model
// (|w| ≤ 32767×scale); the quantisation error is far below what the
// training data can resolve.
const (
	modelMagic   = "SCLM"
	modelFormat  = 1
	minBits      = 10
	maxBits      = 24
	modelHeadLen = 4 + 2 + 2 + 1 + 7 + 8 + 8 + 8 + 8 + 9*(4*8+8) + 4 + 4 + 8 + 8 + 8 + 8 + 4 + 1
)

// MarshalBinary encodes the model in its versioned binary format.
func (m *Model) MarshalBinary() ([]byte, error) {
	if len(m.version) > 255 {
		return nil, errors.New("model: version longer than 255 bytes")
	}
	b := make([]byte, 0, modelHeadLen+len(m.version)+2*len(m.w)+4)
	le := binary.LittleEndian
	b = append(b, modelMagic...)
	b = le.AppendUint16(b, modelFormat)
	b = le.AppendUint16(b, FeatureVersion)
	b = append(b, m.bits)
	b = le.AppendUint16(b, m.bodyMin) // 0 in models before bodyMin: no floor
	b = append(b, 0, 0, 0, 0, 0)
	f64 := func(f float64) { b = le.AppendUint64(b, math.Float64bits(f)) }
	f64(m.bias)
	f64(m.scale)
	f64(m.bodyMean)
	f64(m.bodyPow)
	for i, r := range m.cal.Rows {
		f64(m.cuts[i])
		f64(r.HamTarget)
		f64(r.HamRate)
		f64(r.SpamRate)
		b = le.AppendUint32(b, uint32(r.Ham))
		b = le.AppendUint32(b, uint32(r.Spam))
	}
	b = le.AppendUint32(b, uint32(m.info.TrainHam))
	b = le.AppendUint32(b, uint32(m.info.TrainSpam))
	b = le.AppendUint64(b, m.info.Seed)
	f64(m.info.CVAUC)
	f64(m.info.L1)
	f64(m.info.L2)
	b = le.AppendUint32(b, uint32(m.info.Epochs))
	b = append(b, byte(len(m.version)))
	b = append(b, m.version...)
	for _, w := range m.w {
		b = le.AppendUint16(b, uint16(w))
	}
	return le.AppendUint32(b, crc32.ChecksumIEEE(b)), nil
}

// UnmarshalBinary decodes a model written by MarshalBinary. It checks
// everything: length, checksum, versions and the sanity of every figure, so
// that truncated or corrupt bytes give an error, never a model that
// misbehaves.
func (m *Model) UnmarshalBinary(b []byte) error {
	nm, err := LoadModel(b)
	if err != nil {
		return err
	}
	*m = *nm
	return nil
}

// LoadModel decodes a model written by MarshalBinary (see UnmarshalBinary).
// The model does not keep b.
func LoadModel(b []byte) (*Model, error) {
	le := binary.LittleEndian
	if len(b) < modelHeadLen+4 || string(b[:4]) != modelMagic {
		return nil, errors.New("model: not a sclgate model")
	}
	if v := le.Uint16(b[4:]); v != modelFormat {
		return nil, fmt.Errorf("model: format version %d, this build reads %d", v, modelFormat)
	}
	if v := le.Uint16(b[6:]); v != FeatureVersion {
		return nil, fmt.Errorf("model: built for feature set %d, this build extracts %d", v, FeatureVersion)
	}
	bits := b[8]
	if bits < minBits || bits > maxBits {
		return nil, fmt.Errorf("model: %d hash bits out of range", bits)
	}
	body, sum := b[:len(b)-4], le.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		// Also what a truncated or padded model gives.
		return nil, errors.New("model: checksum mismatch (truncated or corrupt)")
	}
	m := &Model{bits: bits, bodyMin: le.Uint16(b[9:])}
	p := 16
	f64 := func() float64 { v := math.Float64frombits(le.Uint64(b[p:])); p += 8; return v }
	u32 := func() uint32 { v := le.Uint32(b[p:]); p += 4; return v }
	m.bias = f64()
	m.scale = f64()
	m.bodyMean = f64()
	m.bodyPow = f64()
	for i := range m.cal.Rows {
		m.cuts[i] = f64()
		m.cal.Rows[i] = CalRow{SCL: i + 1, Cut: sigmoid(m.cuts[i]), HamTarget: f64(), HamRate: f64(), SpamRate: f64(),
			Ham: int(u32()), Spam: int(u32())}
	}
	m.info.TrainHam = int(u32())
	m.info.TrainSpam = int(u32())
	m.info.Seed = le.Uint64(b[p:])
	p += 8
	m.info.CVAUC = f64()
	m.info.L1 = f64()
	m.info.L2 = f64()
	m.info.Epochs = int(u32())
	vlen := int(b[p])
	p++
	n := 1 << bits
	if len(body) != p+vlen+2*n {
		return nil, fmt.Errorf("model: %d bytes, want %d for %d hash bits", len(b), p+vlen+2*n+4, bits)
	}
	m.version = string(b[p : p+vlen])
	p += vlen

	if !finite(m.bias) || !finite(m.scale) || m.scale < 0 {
		return nil, errors.New("model: bad bias or scale")
	}
	if !finite(m.bodyPow) || m.bodyPow < 0 || m.bodyPow > 1 || !finite(m.bodyMean) || (m.bodyPow != 0 && m.bodyMean < 1) {
		return nil, errors.New("model: bad body scaling")
	}
	if !math.IsInf(m.cuts[0], -1) {
		return nil, errors.New("model: SCL 1 cut must be -Inf")
	}
	for i, r := range m.cal.Rows {
		if i > 0 && (math.IsNaN(m.cuts[i]) || m.cuts[i] < m.cuts[i-1]) {
			return nil, fmt.Errorf("model: SCL %d cut out of order", i+1)
		}
		for _, f := range []float64{r.HamTarget, r.HamRate, r.SpamRate} {
			if !(f >= 0 && f <= 1) {
				return nil, fmt.Errorf("model: SCL %d rates out of range", i+1)
			}
		}
	}
	m.w = make([]int16, n)
	for i := range m.w {
		m.w[i] = int16(le.Uint16(b[p:]))
		if m.w[i] != 0 {
			m.info.NonZero++
		}
		p += 2
	}
	m.info.FeatureVersion = FeatureVersion
	m.info.Bits = int(bits)
	return m, nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
