package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Decode parses and validates one encoded batch. Beyond what
// encoding/json checks it rejects: input over MaxBatchBytes, keys that are
// unknown, repeated, or match a field only case-insensitively, null
// anywhere, arrays of the wrong length, trailing data, and every
// violation of Validate.
func Decode(data []byte) (*UsageBatch, error) {
	if len(data) > MaxBatchBytes {
		return nil, invalid("batch", "larger than MaxBatchBytes")
	}
	// The version picks the shape; the strict checks follow.
	var peek struct {
		SchemaVersion int `json:"schema_version"`
	}
	// Malformed JSON leaves version 0: the strict checks below reject it.
	_ = json.Unmarshal(data, &peek)
	shape := batchShape
	switch peek.SchemaVersion {
	case 1:
		shape = batchShapeV1
	case 2:
		shape = batchShapeV2
	}
	if err := checkShape(data, shape); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b *UsageBatch
	switch peek.SchemaVersion {
	case 1:
		var v1 batchV1
		if err := dec.Decode(&v1); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrInvalid, jsonErrText(err))
		}
		b = v1.current()
	case 2:
		var v2 batchV2
		if err := dec.Decode(&v2); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrInvalid, jsonErrText(err))
		}
		b = v2.current()
	default:
		b = new(UsageBatch)
		if err := dec.Decode(b); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrInvalid, jsonErrText(err))
		}
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// Encode validates b and returns its JSON encoding in b's version.
func Encode(b *UsageBatch) ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	var v any
	switch b.SchemaVersion {
	case 1:
		v = v1Of(b)
	case 2:
		v = v2Of(b)
	default:
		// Absent lists travel as empty ones: the fields are required.
		c := *b
		if c.Budgets == nil {
			c.Budgets = []BudgetUse{}
		}
		if c.Memories == nil {
			c.Memories = []MemoryUse{}
		}
		if c.Audit == nil {
			c.Audit = []AuditCount{}
		}
		v = &c
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode usage batch: %w", err)
	}
	if len(data) > MaxBatchBytes {
		return nil, invalid("batch", "larger than MaxBatchBytes")
	}
	return data, nil
}

// jsonErrText describes a decoding error without quoting the input.
func jsonErrText(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &typeErr):
		return typeErr.Field + ": wrong type or out of range"
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("malformed JSON at offset %d", syntaxErr.Offset)
	case errors.As(err, &timeErr):
		return "time not in RFC 3339"
	}
	return "malformed batch"
}

// shape is the structure a JSON value must have: an object with exactly
// these keys, an array of a bounded or fixed length, or a scalar.
type shape struct {
	fields map[string]field
	elem   *shape
	maxLen int // arrays: most elements allowed
	exact  bool
	// required counts the object's fields that must be present.
	required int
}

type field struct {
	index int
	shape *shape
	// optional fields (",omitempty") may be absent: fields added to
	// version 1 after its release, which earlier edges do not send.
	optional bool
	// nonEmpty: an optional string must not be "" when present, since
	// Encode never sends it so and "" would decode as absent.
	nonEmpty bool
}

var (
	batchShape   = shapeOf(reflect.TypeFor[UsageBatch](), MaxRows)
	batchShapeV1 = shapeOf(reflect.TypeFor[batchV1](), MaxRows)
	batchShapeV2 = shapeOf(reflect.TypeFor[batchV2](), MaxRows)
)

func shapeOf(t reflect.Type, maxLen int) *shape {
	switch {
	case t == reflect.TypeFor[time.Time]():
		return &shape{}
	case t.Kind() == reflect.Pointer:
		return shapeOf(t.Elem(), maxLen)
	case t.Kind() == reflect.Struct:
		s := &shape{fields: map[string]field{}}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			optional := opts == "omitempty"
			s.fields[name] = field{index: i, shape: shapeOf(f.Type, MaxRows), optional: optional,
				nonEmpty: optional && f.Type.Kind() == reflect.String}
			if !s.fields[name].optional {
				s.required++
			}
		}
		return s
	case t.Kind() == reflect.Slice:
		return &shape{elem: shapeOf(t.Elem(), 0), maxLen: maxLen}
	case t.Kind() == reflect.Array:
		return &shape{elem: shapeOf(t.Elem(), 0), maxLen: t.Len(), exact: true}
	}
	return &shape{}
}

func checkShape(data []byte, shape *shape) error {
	w := walker{data: data}
	if err := w.value(shape, "batch"); err != nil {
		return err
	}
	if w.skipSpace(); w.pos != len(w.data) {
		return invalid("batch", "trailing data")
	}
	return nil
}

// walker checks the structure of a JSON text against a shape without
// decoding it: keys exactly as declared (a key with an escape never
// matches, so "\u0073eq" cannot stand in for "seq"), none repeated or
// missing, no null, array lengths bounded. It only needs to find value
// boundaries as encoding/json does; the values themselves are then
// checked by encoding/json, which rejects anything malformed.
type walker struct {
	data []byte
	pos  int
}

var errMalformed = invalid("batch", "malformed JSON")

func (w *walker) skipSpace() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, 0 at the end.
func (w *walker) peek() byte {
	if w.skipSpace(); w.pos < len(w.data) {
		return w.data[w.pos]
	}
	return 0
}

// str consumes a string and returns its raw bytes between the quotes and
// whether it holds an escape.
func (w *walker) str() (raw []byte, escaped bool, err error) {
	if w.peek() != '"' {
		return nil, false, errMalformed
	}
	start := w.pos + 1
	for i := start; i < len(w.data); i++ {
		switch w.data[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			w.pos = i + 1
			return w.data[start:i], escaped, nil
		}
	}
	return nil, false, errMalformed
}

func (w *walker) expect(c byte) error {
	if w.peek() != c {
		return errMalformed
	}
	w.pos++
	return nil
}

func (w *walker) value(s *shape, field string) error {
	switch c := w.peek(); {
	case c == 'n':
		return invalid(field, "null")
	case s.fields != nil:
		if c != '{' {
			return invalid(field, "not an object")
		}
		w.pos++
		var seen uint64 // fields of a shape are fewer than 64
		n, required := 0, 0
		for w.peek() != '}' {
			if n > 0 {
				if err := w.expect(','); err != nil {
					return err
				}
			}
			raw, escaped, err := w.str()
			if err != nil {
				return err
			}
			f, ok := s.fields[string(raw)]
			if !ok || escaped {
				return invalid(field, "unknown field")
			}
			if seen&(1<<f.index) != 0 {
				return invalid(string(raw), "repeated field")
			}
			seen |= 1 << f.index
			if err := w.expect(':'); err != nil {
				return err
			}
			if f.nonEmpty && w.peek() == '"' && w.pos+1 < len(w.data) && w.data[w.pos+1] == '"' {
				return invalid(string(raw), "empty")
			}
			if err := w.value(f.shape, string(raw)); err != nil {
				return err
			}
			n++
			if !f.optional {
				required++
			}
		}
		w.pos++
		if required != s.required {
			return invalid(field, "missing field")
		}
	case s.elem != nil:
		if c != '[' {
			return invalid(field, "not an array")
		}
		w.pos++
		n := 0
		for w.peek() != ']' {
			if n > 0 {
				if err := w.expect(','); err != nil {
					return err
				}
			}
			if n++; n > s.maxLen {
				return invalid(field, "too many elements")
			}
			if err := w.value(s.elem, field); err != nil {
				return err
			}
		}
		w.pos++
		if s.exact && n != s.maxLen {
			return invalid(field, "wrong number of elements")
		}
	case c == '"':
		_, _, err := w.str()
		return err
	case c == '{' || c == '[' || c == 0:
		return invalid(field, "not a scalar")
	default:
		// A number or literal runs to the next delimiter; encoding/json
		// checks its syntax.
		for w.pos < len(w.data) {
			switch w.data[w.pos] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return nil
			}
			w.pos++
		}
	}
	return nil
}
