module github.com/persiv/codex/deploy/deploytest

go 1.26.0

require (
	github.com/persiv/codex/controlplane v0.0.0-00010101000000-000000000000
	github.com/persiv/codex/edge v0.0.0-00010101000000-000000000000
)

replace (
	github.com/persiv/codex/controlplane => ../../controlplane
	github.com/persiv/codex/edge => ../../edge
	github.com/persiv/codex/schemas => ../../schemas
	github.com/persiv/codex/shared => ../../shared
)
