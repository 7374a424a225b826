// Package msgcheck knows the msgpack format byte by byte, so that klring
// never lets a peer's header size an allocation: every length a message
// claims is checked against the bytes that are actually there before any
// decoder believes it.
//
// Check walks one whole msgpack value, nested up to MaxDepth, and fails
// unless every string, binary and extension length fits in the bytes left
// and every array or map count could be backed by them (one byte per
// element at least), and nothing trails the value. Package cluster calls it
// before msgpack/v5 decodes a control message.
//
// ReadBytes, ReadUint and ReadArray read single values for hand-written
// decoders (allreduce's ring envelope): they accept every width msgpack
// allows for the kind of value, check lengths the same way, and allocate
// nothing; slices they return alias the input.
//
// The format bytes are named constants (the msgpack specification's names).
// Every error wraps ErrMalformed and says what is wrong and where.
//
// msgcheck imports nothing but the standard library, and nothing of klring.
package msgcheck
