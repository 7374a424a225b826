package cluster

import (
	"fmt"
	"math"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/config"
	"github.com/klring/klring/lm"
	"github.com/klring/klring/protocol"
	"github.com/klring/klring/shard"
	"github.com/klring/klring/teacherstore"
)

// JobSpec is what every replica of a job must agree on. The coordinator builds
// it from its configuration and hands it to each worker that joins, so workers
// need only the NATS address and the job name.
type JobSpec struct {
	Model       lm.Config `msgpack:"model" json:"model"`
	DataSource  string    `msgpack:"data_source" json:"data_source"`
	ValFraction float64   `msgpack:"val_fraction" json:"val_fraction"`
	DataSeed    uint64    `msgpack:"data_seed" json:"data_seed"`
	Tokenizer   string    `msgpack:"tokenizer" json:"tokenizer"`
	Direction   string    `msgpack:"direction" json:"direction"`
	Target      string    `msgpack:"target" json:"target"` // hard or soft, resolved from auto
	Beta        float64   `msgpack:"beta" json:"beta"`
	Temperature float64   `msgpack:"temperature" json:"temperature"`
	Smoothing   float64   `msgpack:"label_smoothing" json:"label_smoothing"`
	// Distillation: the teacher's folder and the SHA-256 of its weights (a
	// worker whose teacher differs refuses to join), and the loss's
	// distillation settings.
	Teacher            string  `msgpack:"teacher,omitempty" json:"teacher,omitempty"`
	TeacherSHA256      string  `msgpack:"teacher_sha256,omitempty" json:"teacher_sha256,omitempty"`
	TeacherTemperature float64 `msgpack:"teacher_temperature" json:"teacher_temperature"`
	ScaleT2            bool    `msgpack:"scale_t2" json:"scale_t2"`
	HardWeight         float64 `msgpack:"hard_weight" json:"hard_weight"`
	TeacherTopK        int     `msgpack:"teacher_top_k" json:"teacher_top_k"`
	TeacherTail        string  `msgpack:"teacher_tail" json:"teacher_tail"`
	// A teacher's precomputed top-k store instead of a live teacher: its
	// path, its header and the digest of its window checksums (a worker
	// whose store differs refuses to join).
	TeacherStore       string              `msgpack:"teacher_store,omitempty" json:"teacher_store,omitempty"`
	TeacherStoreHeader teacherstore.Header `msgpack:"teacher_store_header,omitempty" json:"teacher_store_header,omitempty"`
	TeacherStoreDigest string              `msgpack:"teacher_store_digest,omitempty" json:"teacher_store_digest,omitempty"`
	// On-policy training: the fraction of windows the student rolls out,
	// the prefix it keeps, its sampling temperature, and the seed (with the
	// step and the window) of what it samples.
	OnPolicy       float64       `msgpack:"on_policy,omitempty" json:"on_policy,omitempty"`
	OnPolicyPrefix int           `msgpack:"on_policy_prefix,omitempty" json:"on_policy_prefix,omitempty"`
	OnPolicyTemp   float64       `msgpack:"on_policy_temperature,omitempty" json:"on_policy_temperature,omitempty"`
	Seed           uint64        `msgpack:"seed" json:"seed"`
	Optimizer      string        `msgpack:"optimizer" json:"optimizer"`
	WeightDecay    float64       `msgpack:"weight_decay" json:"weight_decay"`
	GradClip       float64       `msgpack:"grad_clip" json:"grad_clip"`
	BatchWindows   int           `msgpack:"batch_windows" json:"batch_windows"`
	MicroWindows   int           `msgpack:"micro_windows,omitempty" json:"micro_windows,omitempty"` // 0: the shard in one pass
	ChunkBytes     int           `msgpack:"chunk_bytes" json:"chunk_bytes"`
	ARDeadline     time.Duration `msgpack:"allreduce_deadline" json:"allreduce_deadline"`
	// Wire is the ring's wire, f32 or bf16 (allreduce.wire): every worker
	// of the job must use it, since a ring drops the parts of another wire.
	// ErrorFeedback (bf16 only) makes each worker feed its rounding residual
	// back into its next gradient.
	Wire          string `msgpack:"wire" json:"wire"`
	ErrorFeedback bool   `msgpack:"error_feedback,omitempty" json:"error_feedback,omitempty"`
	// BucketBytes (allreduce.bucket_bytes) is the size of the buckets in
	// which a worker hands its gradient to the ring as backward finishes
	// them; 0: the whole gradient once backward is done. It changes only
	// when a worker sends, never the sums.
	BucketBytes int           `msgpack:"bucket_bytes,omitempty" json:"bucket_bytes,omitempty"`
	Heartbeat   time.Duration `msgpack:"heartbeat" json:"heartbeat"`
	// Data is the coordinator's fingerprint of the data: a worker whose own
	// copy differs refuses to join.
	Data shard.Fingerprint `msgpack:"data" json:"data"`
}

// Validate checks what a worker is told before it builds anything from it:
// every field within bounds, so that a welcome cannot make a worker panic
// or allocate without limit.
func (s JobSpec) Validate() error {
	if err := s.Model.Validate(); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	switch {
	case s.BatchWindows < 1 || s.BatchWindows > protocol.MaxBatch:
		return fmt.Errorf("batch of %d windows, want [1, %d]", s.BatchWindows, protocol.MaxBatch)
	case s.MicroWindows < 0 || s.MicroWindows > protocol.MaxBatch:
		return fmt.Errorf("micro-batches of %d windows, want [0, %d]", s.MicroWindows, protocol.MaxBatch)
	case s.ChunkBytes < allreduce.MinChunkBytes+512 || s.ChunkBytes > allreduce.MaxChunkBytes:
		return fmt.Errorf("chunk of %d bytes, want [%d, %d]", s.ChunkBytes, allreduce.MinChunkBytes+512, allreduce.MaxChunkBytes)
	case s.Heartbeat < minHeartbeat || s.Heartbeat > time.Hour:
		return fmt.Errorf("heartbeat %v, want [%v, 1h]", s.Heartbeat, minHeartbeat)
	case s.ARDeadline <= 0 || s.ARDeadline > 24*time.Hour:
		return fmt.Errorf("all-reduce deadline %v, want (0, 24h]", s.ARDeadline)
	case !(s.GradClip >= 0) || math.IsInf(s.GradClip, 0) || !(s.WeightDecay >= 0) || math.IsInf(s.WeightDecay, 0):
		return fmt.Errorf("grad clip %v, weight decay %v", s.GradClip, s.WeightDecay)
	case s.Optimizer != "adamw" && s.Optimizer != "sgd":
		return fmt.Errorf("optimizer %q", s.Optimizer)
	case s.Wire != "f32" && s.Wire != "bf16":
		return fmt.Errorf("all-reduce wire %q, want f32 or bf16", s.Wire)
	case s.ErrorFeedback && s.Wire != "bf16":
		return fmt.Errorf("error feedback on the %s wire (bf16 only)", s.Wire)
	case s.BucketBytes < 0 || s.BucketBytes > allreduce.MaxBucketBytes:
		return fmt.Errorf("all-reduce buckets of %d bytes, want [0, %d]", s.BucketBytes, allreduce.MaxBucketBytes)
	}
	if s.TeacherStore != "" {
		if s.Teacher != "" {
			return fmt.Errorf("a teacher %q and a teacher store %q", s.Teacher, s.TeacherStore)
		}
		if err := s.TeacherStoreHeader.Validate(); err != nil {
			return fmt.Errorf("teacher store header: %w", err)
		}
	}
	if _, err := engineOptions(s); err != nil {
		return err
	}
	return nil
}

// exactTail is the number of the gradient vector's last floats that cross
// the ring as float32 whatever the wire: the loss sum and the token count,
// which bfloat16 would round.
const exactTail = 2

// ringOptions are the all-reduce options of the job's ring (without a
// deadline: the caller's context has it). A validated spec has a valid wire.
func (s JobSpec) ringOptions() allreduce.Options {
	w, _ := allreduce.ParseWire(s.Wire)
	return allreduce.Options{ChunkBytes: s.ChunkBytes, Wire: w, ExactTail: exactTail, BucketBytes: s.BucketBytes}
}

// vectorWireBytes is the size of a gradient vector of n floats (the last
// exactTail exact) on the job's wire: the bytes of its floats in one pass
// around the ring, envelopes aside.
func (s JobSpec) vectorWireBytes(n int) int64 {
	if s.Wire == "bf16" {
		t := min(exactTail, n)
		return int64(2*(n-t) + 4*t)
	}
	return int64(4 * n)
}

// hasTeacher reports whether the job distils from a teacher, live or
// stored.
func (s JobSpec) hasTeacher() bool { return s.Teacher != "" || s.TeacherStore != "" }

// minHeartbeat is the shortest heartbeat interval a job may have.
const minHeartbeat = 10 * time.Millisecond

// modelConfig resolves the model shape from the preset, the overrides and the
// data's vocabulary.
func modelConfig(m config.Model, dataVocab int) (lm.Config, error) {
	var c lm.Config
	if m.Preset != "custom" {
		p, err := lm.Preset(m.Preset)
		if err != nil {
			return lm.Config{}, fmt.Errorf("model.preset: %w", err)
		}
		c = p
	}
	if m.NEmbd > 0 {
		c.NEmbd = m.NEmbd
	}
	if m.NLayer > 0 {
		c.NLayer = m.NLayer
	}
	if m.NHead > 0 {
		c.NHead = m.NHead
	}
	if m.Ctx > 0 {
		c.Ctx = m.Ctx
	}
	c.Vocab = dataVocab
	if m.Vocab > 0 {
		if m.Vocab < dataVocab {
			return lm.Config{}, fmt.Errorf("model.vocab = %d is smaller than the data's vocabulary %d", m.Vocab, dataVocab)
		}
		c.Vocab = m.Vocab
	}
	c.VocabPad = m.VocabPad
	if err := c.Validate(); err != nil {
		return lm.Config{}, fmt.Errorf("model: %w", err)
	}
	return c, nil
}
