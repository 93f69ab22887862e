package tokenizer

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Decode turns ids back into text as HF's ByteLevel decoder does: the bytes of all tokens are
// joined and invalid UTF-8 becomes U+FFFD per maximal invalid subpart. With skipSpecial, special
// added tokens are left out. An id that is not a token is an error.
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) (string, error) {
	buf := make([]byte, 0, 4*len(ids))
	for i, id := range ids {
		raw, err := t.tokenBytes(id, skipSpecial)
		if err != nil {
			return "", fmt.Errorf("tokenizer: decode: ids[%d]: %w", i, err)
		}
		buf = append(buf, raw...)
	}
	if utf8.Valid(buf) {
		return string(buf), nil
	}
	return string(appendLossy(nil, buf)), nil
}

func (t *Tokenizer) tokenBytes(id int32, skipSpecial bool) ([]byte, error) {
	if id < 0 || int(id) >= len(t.tokens) || !t.present[id] {
		return nil, fmt.Errorf("id %d is not a token (vocab size %d)", id, len(t.tokens))
	}
	if skipSpecial && t.special[id] {
		return nil, nil
	}
	return t.rawTok[id], nil
}

// StreamDecoder decodes ids one at a time for streaming generation. It holds back the bytes of a
// UTF-8 sequence that is not complete yet, so the concatenation of everything Push and Flush return
// equals Decode of all the ids.
type StreamDecoder struct {
	t           *Tokenizer
	skipSpecial bool
	pending     []byte
}

// NewStreamDecoder starts a stream.
func (t *Tokenizer) NewStreamDecoder(skipSpecial bool) *StreamDecoder {
	return &StreamDecoder{t: t, skipSpecial: skipSpecial}
}

// Push adds one id and returns the text that is now complete (possibly "").
func (d *StreamDecoder) Push(id int32) (string, error) {
	raw, err := d.t.tokenBytes(id, d.skipSpecial)
	if err != nil {
		return "", fmt.Errorf("tokenizer: stream decode: %w", err)
	}
	d.pending = append(d.pending, raw...)
	keep := incompleteTail(d.pending)
	done := d.pending[:len(d.pending)-keep]
	out := string(appendLossy(nil, done))
	d.pending = append(d.pending[:0], d.pending[len(done):]...)
	return out, nil
}

// Flush returns what is held back (an unfinished sequence becomes U+FFFD) and resets the stream.
func (d *StreamDecoder) Flush() string {
	out := string(appendLossy(nil, d.pending))
	d.pending = d.pending[:0]
	return out
}

// isWordChar is Rust regex's Unicode \w (HF's single_word test): Alphabetic, marks, decimal
// digits, connector punctuation and join controls.
func isWordChar(r rune) bool {
	if r < utf8.RuneSelf {
		return r == '_' || (r >= '0' && r <= '9') || (r|0x20) >= 'a' && (r|0x20) <= 'z'
	}
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r) ||
		unicode.Is(unicode.Join_Control, r)
}

func endsWithWord(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordChar(r)
}

func startsWithWord(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordChar(r)
}
