package telemetry

import "testing"

func TestNATSServers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		hosts  string
		secure bool
		bad    bool
	}{
		{in: "nats://127.0.0.1:4222", hosts: "127.0.0.1:4222"},
		{in: "tls://127.0.0.1:4222", hosts: "127.0.0.1:4222", secure: true},
		{in: "nats://nats.example.com:4222", hosts: "nats.example.com:4222", secure: true},
		{in: "nats://127.0.0.1:1, tls://localhost:2", hosts: "127.0.0.1:1,localhost:2", secure: true},
		{in: "nats://127.0.0.1:1,nats://a.example:2", hosts: "127.0.0.1:1,a.example:2", secure: true},
		{in: "nats://127.0.0.1:1,", bad: true},
		{in: "127.0.0.1:4222", bad: true},
		{in: "", bad: true},
	} {
		hosts, secure, err := natsServers(tc.in)
		if (err != nil) != tc.bad || hosts != tc.hosts && !tc.bad || secure != tc.secure {
			t.Errorf("natsServers(%q) = %q, %v, %v", tc.in, hosts, secure, err)
		}
	}
}
