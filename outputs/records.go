package outputs

// StepMetrics is one line of metrics.jsonl: one committed step.
type StepMetrics struct {
	Step    uint64   `json:"step"`
	Epoch   uint64   `json:"epoch"`
	Workers int      `json:"workers"`
	Loss    float64  `json:"loss"`         // the objective: mean loss per token
	TrainCE float64  `json:"train_ce"`     // mean cross-entropy of the batch's actual next tokens
	KD      *float64 `json:"kd,omitempty"` // the divergence part of Loss (distillation, or a hard-label mix)
	CE      *float64 `json:"ce,omitempty"` // the cross-entropy part of Loss, the same as TrainCE
	// TeacherTopKMass is the mean teacher mass kept by its top k.
	TeacherTopKMass *float64 `json:"teacher_topk_mass,omitempty"`
	KLToTruth       *float64 `json:"kl_to_truth,omitempty"`
	LR              float64  `json:"lr"`
	GradNorm        float64  `json:"grad_norm"`
	Tokens          int64    `json:"tokens"`       // tokens of this step
	TotalTok        int64    `json:"tokens_total"` // tokens trained on so far
	TokensPerS      float64  `json:"tokens_per_s"`
	ComputeS        float64  `json:"compute_s"`
	// ComputeCPUS is the slowest rank's compute in CPU seconds of its own
	// thread (scaling experiments); else its wall time.
	ComputeCPUS float64 `json:"compute_cpu_s"`
	Bytes       int64   `json:"allreduce_bytes"` // size of the reduced vector on the ring's wire (bf16: 2 bytes a float)
	AllReduceS  float64 `json:"allreduce_s"`
	WaitS       float64 `json:"wait_s"`
	StepS       float64 `json:"step_s"`
	// MFU is the model FLOPs utilisation of the step: the student's
	// training FLOPs (lm.Config.TrainFLOPs) per second of step_s over
	// the peak (run.peak_gflops, or measured at start).
	MFU          float64  `json:"mfu"`
	Attempts     int      `json:"attempts"`
	ValLoss      *float64 `json:"val_loss,omitempty"`
	ValKL        *float64 `json:"val_kl_to_truth,omitempty"`
	ValBPB       *float64 `json:"val_bits_per_byte,omitempty"`
	ValTeacherKL *float64 `json:"val_kl_from_teacher,omitempty"` // held-out KL(teacher || student)
	ValEntropy   *float64 `json:"val_entropy,omitempty"`         // held-out entropy of the model's next-token distribution
	// ValSampleKL is the reverse KL from the model to the truth (smoothed
	// by 0.01) on its own samples of held-out windows (run.sample_kl_windows).
	ValSampleKL *float64 `json:"val_sample_kl,omitempty"`
}

// LedgerEntry is one line of ledger.jsonl: which windows each worker
// contributed to a committed step.
type LedgerEntry struct {
	Step  uint64        `json:"step"`
	Epoch uint64        `json:"epoch"`
	Batch []int32       `json:"batch"`
	Ranks []LedgerShare `json:"ranks"`
}

// LedgerShare is one worker's part of a committed step.
type LedgerShare struct {
	Worker  string  `json:"worker"`
	Windows []int32 `json:"windows"`
}

// Summary is what a finished run reports, and summary.json holds.
type Summary struct {
	Steps     uint64  `json:"steps"`
	Tokens    int64   `json:"tokens"`
	TrainLoss float64 `json:"train_loss"`
	ValLoss   float64 `json:"val_loss"`
	ValKL     float64 `json:"val_kl_to_truth"`
	ValBPB    float64 `json:"val_bits_per_byte,omitempty"` // 0 when the data is not text
	// ValTeacherKL is the held-out KL(teacher || student); TeacherKL the
	// teacher's own exact KL to the truth (synthetic data). -1 or absent
	// without a teacher.
	ValTeacherKL     *float64 `json:"val_kl_from_teacher,omitempty"`
	TeacherKLToTruth *float64 `json:"teacher_kl_to_truth,omitempty"`
	ValEntropy       float64  `json:"val_entropy"`             // of the model's next-token distribution, nats/token
	ValSampleKL      *float64 `json:"val_sample_kl,omitempty"` // reverse KL to the truth on the model's own samples (run.sample_kl_windows)
	EntropyFloor     float64  `json:"entropy_floor"`           // -1 when unknown
	TokensPerS       float64  `json:"tokens_per_s"`
	MFU              float64  `json:"mfu"`         // over the run: model FLOPs per second / PeakGFLOPs
	PeakGFLOPs       float64  `json:"peak_gflops"` // the peak MFU is against
	Seconds          float64  `json:"seconds"`
	Aborts           int      `json:"aborts"`
	Stopped          bool     `json:"stopped,omitempty"` // paused at a step boundary on request; run again to resume
	RunDir           string   `json:"run_dir"`
	Checkpoint       string   `json:"checkpoint"`
	Metrics          string   `json:"metrics"`
	Plot             string   `json:"plot"`
	ResumedFrom      uint64   `json:"resumed_from"`
}
