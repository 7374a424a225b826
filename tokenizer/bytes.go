package tokenizer

// bytesTokenizer: token ids are the bytes of the text, vocabulary 256.
type bytesTokenizer struct{}

func (bytesTokenizer) Name() string { return NameBytes }
func (bytesTokenizer) Vocab() int   { return 256 }

func (bytesTokenizer) Encode(text []byte) []int32 {
	ids := make([]int32, len(text))
	for i, b := range text {
		ids[i] = int32(b)
	}
	return ids
}

func (t bytesTokenizer) Decode(ids []int32) ([]byte, error) {
	out := make([]byte, len(ids))
	for i, id := range ids {
		if uint32(id) > 255 {
			return nil, rangeError(t, id, i)
		}
		out[i] = byte(id)
	}
	return out, nil
}

func (bytesTokenizer) TokenBytes(id int32) int {
	if uint32(id) > 255 {
		return -1
	}
	return 1
}

// Cut: every position is a place to cut bytes.
func (bytesTokenizer) Cut(text []byte, from int) int {
	checkFrom(text, from)
	return from
}
