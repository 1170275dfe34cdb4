package fakeprovider

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// DefaultEmbeddingDims is the vector size when the request sets no
// dimensions.
const DefaultEmbeddingDims = 8

// maxEmbeddingDims bounds the dimensions a request may ask for.
const maxEmbeddingDims = 4096

type embeddingInput struct {
	text   string // a token array is rendered as its decimal tokens, space-separated
	tokens int64
}

// embeddingInputs parses the input forms OpenAI accepts: a string, an
// array of strings, an array of tokens, or an array of token arrays.
func embeddingInputs(raw json.RawMessage) ([]embeddingInput, error) {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 || raw[0] == 'n' {
		return nil, errors.New("input is required")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []embeddingInput{textInput(s)}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, errors.New("input must not be empty")
	}
	if c := bytes.TrimLeft(items[0], " \t\r\n"); len(c) > 0 && c[0] != '"' && c[0] != '[' {
		var toks []int64
		if err := json.Unmarshal(raw, &toks); err != nil {
			return nil, err
		}
		return []embeddingInput{tokenInput(toks)}, nil
	}
	out := make([]embeddingInput, 0, len(items))
	for _, it := range items {
		it = bytes.TrimLeft(it, " \t\r\n")
		if len(it) > 0 && it[0] == '[' {
			var toks []int64
			if err := json.Unmarshal(it, &toks); err != nil {
				return nil, err
			}
			out = append(out, tokenInput(toks))
			continue
		}
		var s string
		if err := json.Unmarshal(it, &s); err != nil {
			return nil, err
		}
		out = append(out, textInput(s))
	}
	return out, nil
}

func textInput(s string) embeddingInput {
	return embeddingInput{text: s, tokens: max(int64(Words(s)), 1)}
}

func tokenInput(toks []int64) embeddingInput {
	parts := make([]string, len(toks))
	for i, t := range toks {
		parts[i] = strconv.FormatInt(t, 10)
	}
	return embeddingInput{text: strings.Join(parts, " "), tokens: max(int64(len(toks)), 1)}
}

func embeddingTokens(in []embeddingInput) int64 {
	var n int64
	for _, e := range in {
		n += e.tokens
	}
	return n
}

// EmbeddingVector returns the vector the fake answers for input (for a
// token array: its tokens in decimal, joined by single spaces). Values are
// float32 in [-1, 1], so the float and base64 encodings carry the same
// numbers.
func EmbeddingVector(input string, dims int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(input))
	x := h.Sum64()
	v := make([]float32, dims)
	for i := range v {
		// splitmix64: a cheap, well-mixed deterministic sequence.
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		v[i] = float32(int32(z>>32)) / (1 << 31)
	}
	return v
}

// embeddings serves POST /v1/embeddings.
func (ex *exchange) embeddings() error {
	r, err := parseRequest(ex.body)
	if err != nil {
		ex.error(http.StatusBadRequest, errInvalid, "We could not parse the JSON body of your request.")
		return nil
	}
	if r.Model == "" {
		ex.error(http.StatusBadRequest, errInvalid, "model: Field required")
		return nil
	}
	in, err := embeddingInputs(r.Input)
	if err != nil {
		ex.error(http.StatusBadRequest, errInvalid, "Invalid 'input': "+err.Error())
		return nil
	}
	dims := DefaultEmbeddingDims
	if r.Dimensions != 0 {
		if r.Dimensions < 1 || r.Dimensions > maxEmbeddingDims {
			ex.error(http.StatusBadRequest, errInvalid, "Invalid 'dimensions': must be between 1 and "+strconv.Itoa(maxEmbeddingDims)+".")
			return nil
		}
		dims = r.Dimensions
	}
	base64Format := false
	switch r.EncodingFormat {
	case "", "float":
	case "base64":
		base64Format = true
	default:
		ex.error(http.StatusBadRequest, errInvalid, "Invalid 'encoding_format': must be 'float' or 'base64'.")
		return nil
	}
	if !ex.fault(r.Model) {
		return nil
	}
	u := Usage{InputTokens: embeddingTokens(in)}
	withBuffer(func(b []byte) []byte {
		b = append(b, `{"object":"list","data":[`...)
		raw := make([]byte, 4*dims)
		for i, e := range in {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"object":"embedding","index":`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `,"embedding":`...)
			vec := EmbeddingVector(e.text, dims)
			if base64Format {
				for j, f := range vec {
					binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
				}
				b = append(b, '"')
				b = base64.StdEncoding.AppendEncode(b, raw)
				b = append(b, '"')
			} else {
				b = append(b, '[')
				for j, f := range vec {
					if j > 0 {
						b = append(b, ',')
					}
					b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
				}
				b = append(b, ']')
			}
			b = append(b, '}')
		}
		b = append(b, ']')
		b = appendStringField(b, "model", r.Model)
		b = append(b, `,"usage":{"prompt_tokens":`...)
		b = strconv.AppendInt(b, u.InputTokens, 10)
		b = appendIntField(b, "total_tokens", u.InputTokens)
		b = append(b, "}}\n"...)
		if !ex.stall {
			ex.setUsage(u)
		}
		err = ex.writeJSON(http.StatusOK, b)
		return b
	})
	return err
}
