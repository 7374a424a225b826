// Package compare runs the same training budget under several settings and
// compares the results: for every combination of the varied configuration
// keys (Vary, as --vary loss.direction=forward,reverse,jsd) it builds the
// configuration over the rest of the user's (Plan, checking every
// combination before anything runs), runs it in simulation mode one after
// the other, each in a run.dir of its own under the comparison's, with
// held-out evaluations every few steps, and writes compare.csv,
// compare.json and four plots against tokens, one line per setting: the
// held-out exact KL to the synthetic truth (compare_kl.png, synthetic data
// only), the held-out cross-entropy (compare_ce.png), the model's held-out
// entropy (compare_entropy.png) and the reverse KL on the model's own
// samples (compare_sample_kl.png), from each run's metrics.jsonl.
//
// Check refuses what cannot train to a finite loss before any run starts:
// reverse KL (or JSD at beta 1) against the synthetic truth without
// loss.label_smoothing, and any direction but forward against the actual
// next tokens; CheckFiles refuses a setting whose files (data.source's
// file, model.init, loss.teacher, loss.teacher_store) cannot be opened;
// Run's Options.Check (cluster.CheckJob) opens every setting's job before
// the first trains, so files that do not fit it (a teacher of another
// vocabulary or context, a store of other data) stop the comparison before
// anything has run.
// Plan also refuses a run.dir that holds an earlier comparison's outputs or
// a setting's run folder (ErrRunDirUsed): a comparison never resumes the
// checkpoints of another, nor replaces its table and plots.
//
// compare knows the configuration, engine's targets and the run's output
// files; the run itself is handed in (Options.Simulate: cluster.Simulate,
// Options.Check: cluster.CheckJob),
// so it knows nothing of NATS or the protocol.
package compare
