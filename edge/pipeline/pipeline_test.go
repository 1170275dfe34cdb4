package pipeline_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/persiv/codex/edge/pipeline"
)

// TestChain checks that stages run outermost first, each around the next,
// and that a stage that answers stops the chain.
func TestChain(t *testing.T) {
	var trace []string
	stage := func(name string, answer bool) pipeline.Stage {
		return func(next pipeline.Handler) pipeline.Handler {
			return pipeline.HandlerFunc(func(x *pipeline.Exchange) error {
				trace = append(trace, name+">")
				defer func() { trace = append(trace, "<"+name) }()
				if answer {
					return errors.New(name + " answered")
				}
				return next.Serve(x)
			})
		}
	}
	last := pipeline.HandlerFunc(func(*pipeline.Exchange) error { trace = append(trace, "last"); return nil })
	cases := []struct {
		name    string
		stages  []pipeline.Stage
		want    []string
		wantErr string
	}{
		{"in order", []pipeline.Stage{stage("a", false), stage("b", false)}, []string{"a>", "b>", "last", "<b", "<a"}, ""},
		{"answering stage stops", []pipeline.Stage{stage("a", false), stage("b", true), stage("c", false)}, []string{"a>", "b>", "<b", "<a"}, "b answered"},
		{"no stages", nil, []string{"last"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			trace = nil
			err := pipeline.Chain(last, c.stages...).Serve(&pipeline.Exchange{})
			if (err == nil) != (c.wantErr == "") || (err != nil && err.Error() != c.wantErr) {
				t.Fatalf("err %v, want %q", err, c.wantErr)
			}
			if !slices.Equal(trace, c.want) {
				t.Fatalf("ran %v, want %v", trace, c.want)
			}
		})
	}
}
