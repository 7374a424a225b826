// Package allreducetest is the conformance suite every allreduce.Transport
// must pass: exact sums, bit-identical results on every rank, float
// tolerance against a float64 reference, isolation between jobs, a rank
// that dies mid-way, and foreign garbage on the ring's subjects. The
// in-memory transport runs it in package allreduce, the NATS transport in
// package natsnet, against a real embedded server.
//
// Network is what a transport supplies: rings of n endpoints that listen
// before any rank sends, and a way to inject messages as a foreign client.
// Run runs every case; each uses its own epoch, so one Network can serve
// them all. allreducetest knows nothing of any particular transport.
package allreducetest
