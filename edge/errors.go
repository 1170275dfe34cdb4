package edge

// Error is an error the edge answers itself: to a client in the shape of
// the provider its route belongs to (see provider.Format.ErrorBody), or on
// the admin API as JSON. Provider errors never become an Error: they are
// forwarded unchanged.
type Error struct {
	Status  int
	Code    string // OpenAI's "code"; also picks Anthropic's type
	Message string
	// Type, when set, is OpenAI's error "type" instead of the one the
	// status implies (rate limits say "requests" or "tokens", budgets
	// "insufficient_quota"). Anthropic's type always follows the status.
	Type string
	// RetryAfter, when positive, is sent as the retry-after header, in
	// seconds.
	RetryAfter int
}

func (e *Error) Error() string { return e.Message }
