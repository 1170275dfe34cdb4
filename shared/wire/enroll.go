package wire

// EnrollPath is the control plane's enrollment endpoint: an edge POSTs an
// EnrollRequest there as application/json and gets an EnrollResponse, or
// an ErrorBody with a status of 400 or more.
const EnrollPath = "/api/v1/enroll"

// EnrollRequest is what an edge sends to enroll: the one-time token and
// the public half of the NATS user key pair it made. The seed never leaves
// the edge.
type EnrollRequest struct {
	Token     string `json:"token"`
	PublicKey string `json:"public_key"` // NATS user nkey, "U…"
	Name      string `json:"name"`
	Version   string `json:"version"`
}

// EnrollResponse is what an enrolled edge receives. With its own seed,
// UserJWT lets it publish on Subject only, using InboxPrefix for replies.
type EnrollResponse struct {
	EdgeID      string `json:"edge_id"`
	OrgID       string `json:"org_id"`
	UserJWT     string `json:"user_jwt"`
	NATSURL     string `json:"nats_url"`
	Subject     string `json:"subject"`
	InboxPrefix string `json:"inbox_prefix"`
	// SchemaVersions are the usage batch versions the control plane
	// accepts; a control plane that predates the field sends none, which
	// means version 1 only.
	SchemaVersions []int `json:"schema_versions,omitempty"`
}

// ErrorBody is the control plane's error answer on its HTTP API,
// enrollment included: {"error":{"code","message"}}. A refused token is
// 401 with code "invalid_token", whatever the reason.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of an ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
