module github.com/persiv/codex/controlplane

go 1.26.0
